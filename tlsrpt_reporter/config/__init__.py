"""Configuration: one TOML file, every key with a default, checked once at load.

``schema`` is its shape (typed, frozen dataclasses), ``load`` reads and checks the file (with
``values``, the checks of single values), ``check`` holds the findings of ``check-config``.

Imports only the shared core (and ``report.sources`` for source names); ``check`` also uses
``deliver.dkim``, to load the configured keys.
"""

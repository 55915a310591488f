"""Configuration: one TOML file, every key with a default, checked once at load.

Imports only the shared core (and ``report.sources`` for source names).
"""

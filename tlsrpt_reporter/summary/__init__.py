"""``tlsrpt-reporter summary``: which domains fail, how, and whether our reports were delivered.

``model`` holds the summary's frozen data and ``compute`` derives it, both pure; ``gather``
reads the sources and the state database into them; ``text`` renders rich tables for the
terminal, ``page`` and ``charts`` the static HTML page with inline SVG, which ``page`` also
writes. Nothing here sends, builds or changes state.
"""

"""The TLS-RPT collector daemon (installed as ``tlsrpt_collectd``).

``listener`` owns the Unix socket, ``receiver`` the process that drains it, ``daemon`` the
decoding, aggregation and SQLite flushing.
"""

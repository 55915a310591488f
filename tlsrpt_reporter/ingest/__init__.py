"""Inputs other than the socket: replaying session logs and reading MTA logs (Postfix, Exim),
each folded into a collector database through the collector's own decoder and aggregate.

May import ``wire``, ``store`` and the shared core.
"""

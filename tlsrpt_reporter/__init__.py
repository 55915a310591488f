"""SMTP TLS Reporting (RFC 8460) for sending MTAs: collect TLS outcomes, build and send reports.

The data flows wire -> aggregate -> store -> report -> deliver; config and cli sit at the edge.
"""

__version__ = "0.1.0"

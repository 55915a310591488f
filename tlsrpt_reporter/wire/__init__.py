"""The datagram and its intake: decoding libtlsrpt datagrams, encoding them (for replay and
tests), and folding sessions into the in-memory aggregate the store writes.

Pure code; imports only the shared core (``model``, ``domain``, ``errors``).
"""

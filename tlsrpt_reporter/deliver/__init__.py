"""Delivery of built reports: by mail (``mail``, ``dkim``, ``smtp``) and by HTTPS (``https``).

Each transport module owns its I/O; composing messages and checking destinations is pure code.
"""

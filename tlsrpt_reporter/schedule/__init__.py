"""When reports are built and sent: finished days, spread send times, retry backoff.

May import ``report``, ``store``, ``config`` and the shared core.
"""

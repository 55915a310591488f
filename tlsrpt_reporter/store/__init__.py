"""The SQLite store, and the only place with SQL: the collected aggregates (``collected``,
written by the collector, read by the reporter) and the reporter's state of built reports and
their deliveries (``reports``).

May import ``wire`` (the aggregate it writes) and the shared core.
"""

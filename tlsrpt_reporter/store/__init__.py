"""The SQLite store, and the only place with SQL.

The collector database: ``collected_schema`` (schema, migrations, opening), ``collected`` (the
aggregates' writes and reads; re-exports the opening and ``collected_rows``: row keys, upserts,
write batches), ``collected_canon`` (the migration that rewrote older rows into the canonical
forms), ``collected_async`` (the daemon's writes and retention through aiosqlite),
``ingest_position`` (where ``ingest-log --follow`` stopped).
The reporter's state of built reports and their deliveries: ``reports`` (schema and the
builder's and sender's reads and writes), ``instance`` (this reporter's instance id),
``report_status`` (read-only summaries for ``status``). ``tx``: the one transaction helper
every write transaction goes through.

May import ``wire`` (the aggregate it writes) and the shared core.
"""

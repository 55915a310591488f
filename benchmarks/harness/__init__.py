"""What the benchmarks share, imported as ``harness`` by the scripts in ``benchmarks/``.

``model``       the ingest benchmark's sizes, pre-generated data and result records
``senders``     sender processes that send like an MTA (non-blocking, paced or blocking)
``collectors``  a collector under test as a subprocess, and driving senders against it
``measure``     peak RSS of processes, a command's wall time and peak RSS, the machine
``namespace``   ``net.unix.max_dgram_qlen``: reading it, and a pass in a new network namespace
``output``      figures, the per-scenario lines, targets, ratios and the summary table
``pgfleet``     the fleet benchmark's PostgreSQL cluster, collector databases, timed pushes
``rounds``      the fleet benchmark's rounds of ``send --now`` reporters and their checks
"""

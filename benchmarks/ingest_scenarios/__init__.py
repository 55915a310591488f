"""The ingest benchmark's scenarios, one module each, run by ``benchmarks/ingest.py``.

Each module has ``run(qlen, root, settings, data) -> Row`` (``sys4`` also takes the path of
sys4's collector): it runs the scenario against a fresh collector in a new directory under
``root``, prints its line and returns its row for the summary.

``blast``   the realistic mix as fast as possible, non-blocking sends
``steady``  a fixed rate for a duration, in 1 ms bursts, non-blocking
``memory``  one datagram for each of many distinct domains at the steady rate: peak RSS
``burst``   the same domains as one blocking burst: the worst case, for information
``bare``    the blast, sent to a loop that only ``recv()``s and counts
``sys4``    the blast, sent to sys4's ``tlsrpt-collectd``
"""

"""``tlsrpt-reporter demo``: the whole job on the bundled sample, with local SMTP and HTTPS
sinks and a seeded sample generator (also used by the benchmarks and tests).
"""

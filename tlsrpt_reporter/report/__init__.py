"""Building reports: reading a day from the sources, the RFC 8460 document, its JSON schema,
and reading report files back (``inspect``).

The document and schema modules are pure; ``sources`` reads collector databases (through
``store``) and ``cmd:`` exports. May import ``store``, ``wire`` and the shared core.
"""

"""``python -m tlsrpt_reporter.cli``: the same as the ``tlsrpt-reporter`` command."""

import sys

from tlsrpt_reporter.cli.app import main

sys.exit(main())

"""The command line: ``tlsrpt-reporter`` and its subcommands, and the mapping of errors to exit
codes. The edge of the program: may import every other package, none imports it.
"""

from tlsrpt_reporter.cli.app import main

__all__ = ["main"]

"""Write the man pages from the argument parsers, so they say what the commands accept.

``make man`` runs this; ``tests/cli/test_man_pages.py`` fails when a committed page differs from
what it writes now. The output depends on nothing but the parsers and the ``*.include`` files
here: the width is fixed and the footer carries the version, not today's date.
"""

from __future__ import annotations

import os
import sys
from argparse import ArgumentParser
from pathlib import Path

from argparse_manpage.manpage import Manpage

from tlsrpt_collectd.daemon import build_parser as collectd_parser
from tlsrpt_reporter import __version__
from tlsrpt_reporter.cli.app import build_parser as reporter_parser

HERE = Path(__file__).resolve().parent
# (file name, parser factory, section, one-line description)
PAGES = (
    ("tlsrpt-reporter.1", reporter_parser, 1,
     "build and send SMTP TLS reports (RFC 8460), inspect and ingest"),
    ("tlsrpt-collectd.8", collectd_parser, 8,
     "collect the TLS outcomes of a sending MTA into SQLite"),
)  # fmt: skip


def page(parser: ArgumentParser, name: str, section: int, description: str) -> str:
    """The roff text of one man page."""
    os.environ["COLUMNS"] = "80"  # argparse wraps help text to the terminal's width
    data = {
        "project_name": "tlsrpt-rfc8460-reporter",
        "version": __version__,
        "date": f"version {__version__}",
        "manual_title": "TLS-RPT reporter manual",
        "manual_section": section,
        "description": description,
        "include": str(HERE / f"{name}.include"),
    }
    return str(Manpage(parser, _data=data)).rstrip("\n") + "\n"


def pages() -> dict[str, str]:
    """Each page's file name and text."""
    return {
        name: page(factory(), name, section, description)
        for name, factory, section, description in PAGES
    }


def main() -> int:
    """Write every page next to this script."""
    for name, text in pages().items():
        (HERE / name).write_text(text)
        print(f"wrote man/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

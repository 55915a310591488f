"""``tlsrpt-reporter summary``: which domains fail, how, and whether our reports were delivered,
as rich tables, JSON or a static HTML page (docs/summary.md); and the page written after each
send when ``reporter.summary_html`` is set.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
import time

from tlsrpt_reporter.config.load import load as load_config
from tlsrpt_reporter.config.schema import ReporterConfig
from tlsrpt_reporter.errors import TlsRptError
from tlsrpt_reporter.summary import gather, page, text
from tlsrpt_reporter.summary.model import as_json

log = logging.getLogger("tlsrpt-reporter")

EXIT_OK = 0
FORMATS = ("text", "json")


def command(
    config_path: str | None,
    *,
    days: int = 30,
    day: str | None = None,
    html: str | None = None,
    fmt: str = "text",
    top: int = 50,
) -> int:
    """Print the summary of the ``days`` days ending today (or ``day``); with ``html``, also
    write the page into that directory. Always 0 once the summary could be made: an empty
    window says "nothing collected yet"."""
    cfg = load_config(config_path).reporter
    summary = gather.gather(cfg, time.time(), days=days, day=day, top=top)
    if fmt == "json":
        print(json.dumps(as_json(summary), indent=2, ensure_ascii=False))
    else:
        text.render(summary, sys.stdout)
    if html is not None:
        written = page.write(html, summary)
        # Standard error under --format json, so that standard output stays one JSON document.
        print(f"summary page written to {written}", file=sys.stderr if fmt == "json" else None)
    return EXIT_OK


def after_send(cfg: ReporterConfig) -> str:
    """Write the summary page into ``reporter.summary_html`` when it is set; returns why that
    failed ('' when it did not, or nothing was asked). Sending has happened already, so a
    failure here is told, never raised."""
    if not cfg.summary_html:
        return ""
    try:
        page.write(cfg.summary_html, gather.gather(cfg, time.time()))
    except (TlsRptError, sqlite3.Error) as exc:
        return f"reporter.summary_html: {exc}"
    return ""


def after_pass(cfg: ReporterConfig) -> None:
    """:func:`after_send` for the long-running reporter: a failure is logged."""
    problem = after_send(cfg)
    if problem:
        log.error("%s", problem)

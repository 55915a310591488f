"""(a) blast: ``--count`` datagrams of the realistic mix at once, non-blocking like libtlsrpt."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.collectors import OurCollector, run_collector
from harness.model import SETTLE_LIMIT, Data, Row, Settings
from harness.output import n, outcome_row, report, rss_text, timing_text
from harness.senders import SenderGroup


def senders(settings: Settings, data: Data) -> Callable[[str], SenderGroup]:
    """``--senders`` non-blocking senders of the realistic mix, for a collector's socket."""
    return lambda path: SenderGroup.blast(path, data.blast, settings.senders)


def run(qlen: int, root: Path, settings: Settings, data: Data) -> Row:
    """Everything at once, non-blocking."""
    out = run_collector(OurCollector(root), senders(settings, data), SETTLE_LIMIT)
    row = outcome_row(qlen, "blast", out)
    text = (
        f"sent {n(out.sends.sent)}, dropped at sender {n(out.sends.dropped)} (sending took "
        f"{out.sends.finished - out.sends.started:.2f} s), stored {n(out.stored)}, loss "
        f"{n(row.loss)}; {timing_text(out)}; peak RSS {rss_text(out.rss_kib)}"
    )
    return report(row, text, out)

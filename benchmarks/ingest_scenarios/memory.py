"""(c) memory: one datagram for each of ``--memory-domains`` distinct domains at ``--rate``/s."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness.collectors import OurCollector, run_collector
from harness.model import SETTLE_LIMIT, Data, Row, Settings
from harness.output import n, outcome_row, report, rss_text
from harness.senders import SenderGroup, paced_worker


def run(qlen: int, root: Path, settings: Settings, data: Data) -> Row:
    """Many distinct domains in one day, arriving at the steady rate like MTA traffic: peak
    RSS (VmHWM) of the daemon and of its receive process."""
    paced = dataclasses.replace(settings, duration=len(data.distinct) / settings.rate)
    out = run_collector(
        OurCollector(root),
        lambda path: SenderGroup(paced_worker, [(path, data.distinct, paced)]),
        SETTLE_LIMIT * 2,
    )
    row = outcome_row(
        qlen, "memory", out, note=f"{n(len(data.distinct))} distinct, {n(settings.rate)}/s"
    )
    text = (
        f"{n(len(data.distinct))} datagrams for distinct domains at {n(settings.rate)}/s, "
        f"non-blocking: sent {n(out.sends.sent)}, dropped {n(out.sends.dropped)}, stored "
        f"{n(out.stored)}, loss {n(row.loss)}; peak RSS (VmHWM) {rss_text(out.rss_kib)}"
    )
    return report(row, text, out)

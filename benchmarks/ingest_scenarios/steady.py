"""(b) steady: ``--rate`` datagrams per second for ``--duration`` s, in 1 ms bursts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness.collectors import OurCollector, run_collector
from harness.model import SETTLE_LIMIT, Data, Row, Settings
from harness.output import n, outcome_row, report, rss_text
from harness.senders import SenderGroup, paced_worker


def run(qlen: int, root: Path, settings: Settings, data: Data) -> Row:
    """A fixed rate for a duration, non-blocking: drops at the sender and loss."""
    out = run_collector(
        OurCollector(root),
        lambda path: SenderGroup(paced_worker, [(path, data.blast, settings)]),
        settings.duration * 3 + SETTLE_LIMIT,
    )
    took = out.sends.finished - out.sends.started
    offered = (out.sends.sent + out.sends.dropped) / took
    row = dataclasses.replace(
        outcome_row(qlen, "steady", out, note=f"offered {n(offered)}/s"),
        stored_rate=None,
        recv_rate=None,
    )
    text = (
        f"{n(settings.rate)}/s for {settings.duration:g} s (achieved {n(offered)}/s over "
        f"{took:.2f} s): sent {n(out.sends.sent)}, dropped at sender {n(out.sends.dropped)}, "
        f"stored {n(out.stored)}, loss {n(row.loss)}; peak RSS {rss_text(out.rss_kib)}"
    )
    return report(row, text, out)

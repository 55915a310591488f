"""(c') burst: the memory scenario's distinct domains as one burst with a blocking sender."""

from __future__ import annotations

from pathlib import Path

from harness.collectors import OurCollector, run_collector
from harness.model import SETTLE_LIMIT, Data, Row, Settings
from harness.output import n, outcome_row, report, rss_text
from harness.senders import SenderGroup, blocking_worker


def run(qlen: int, root: Path, settings: Settings, data: Data) -> Row:
    """The worst case, for information: the collector buffers what it cannot store yet
    (``settings`` is not used: the burst is as large as the memory scenario)."""
    out = run_collector(
        OurCollector(root),
        lambda path: SenderGroup(blocking_worker, [(path, data.distinct)]),
        SETTLE_LIMIT * 2,
    )
    row = outcome_row(qlen, "burst", out, note=f"{n(len(data.distinct))} distinct, blocking")
    text = (
        f"{n(len(data.distinct))} datagrams for distinct domains, blocking sends: sent "
        f"{n(out.sends.sent)}, stored {n(out.stored)}, loss {n(row.loss)} in "
        f"{out.elapsed:.2f} s; peak RSS (VmHWM) {rss_text(out.rss_kib)}"
    )
    return report(row, text, out)

"""Figures as text: the line each scenario prints, targets, ratios and the summary table."""

from __future__ import annotations

from harness.model import TARGET_BLAST_RATE, TARGET_QLEN, TARGET_RSS_MIB, Outcome, Row


def n(value: float) -> str:
    """A count or rate with thousands separators."""
    return f"{value:,.0f}"


def mib(kib: int) -> float:
    """KiB to MiB."""
    return kib / 1024


def rss_text(rss: dict[str, int]) -> str:
    """Per-process peak RSS and the sum, e.g. 'daemon 40.1 + receiver 12.0 = 52.1 MiB'."""
    parts = " + ".join(f"{role} {mib(kib):.1f}" for role, kib in rss.items())
    return f"{parts} = {mib(sum(rss.values())):.1f} MiB"


def targets_missed(row: Row) -> list[str]:
    """The "TARGET MISSED" lines a result deserves."""
    missed = []
    where = f"(qlen {row.qlen})"
    if row.scenario in ("blast", "steady", "memory", "burst") and row.loss:
        missed.append(
            f"TARGET MISSED {where}: {row.scenario}: loss {n(row.loss)}, must be 0 "
            "(accepted by the kernel but not stored: a collector bug)"
        )
    rate = row.stored_rate or 0
    if row.scenario == "blast" and row.qlen == TARGET_QLEN and rate < TARGET_BLAST_RATE:
        missed.append(
            f"TARGET MISSED {where}: blast stored {n(rate)}/s, target >= {n(TARGET_BLAST_RATE)}/s"
        )
    if row.scenario == "steady" and row.qlen == TARGET_QLEN and row.dropped:
        missed.append(
            f"TARGET MISSED {where}: steady dropped {n(row.dropped)} at the sender, target 0"
        )
    if row.scenario == "memory" and (row.rss_mib or 0) >= TARGET_RSS_MIB:
        missed.append(
            f"TARGET MISSED {where}: memory peak RSS {row.rss_mib:.1f} MiB, "
            f"target < {TARGET_RSS_MIB:.0f} MB"
        )
    return missed


def ratios(rows: list[Row]) -> list[str]:
    """Our blast against the bare loop and against sys4, for the rows of one queue length."""
    found = {r.scenario: r for r in rows}
    ours, bare, sys4 = found.get("blast"), found.get("bare"), found.get("sys4")
    lines = []
    if ours and bare and ours.stored_rate and ours.recv_rate and bare.recv_rate:
        lines.append(
            f"collector/bare = {ours.stored_rate / bare.recv_rate:.2f} "
            f"(stored/s over bare received/s), {ours.recv_rate / bare.recv_rate:.2f} "
            "(received/s over bare received/s)"
        )
    if ours and sys4 and ours.stored_rate and sys4.stored_rate:
        lines.append(
            f"ours/sys4 = {ours.stored_rate / sys4.stored_rate:.2f} (stored/s over stored/s)"
        )
    return lines


def report(row: Row, text: str, out: Outcome | None = None) -> Row:
    """Print a scenario's line and any missed target; return the row. With the collector run
    ``out`` and a loss, the line ends with where the missing datagrams went."""
    if out is not None and row.loss:
        text += loss_detail(out)
    print(f"[qlen {row.qlen}] {row.scenario}: {text}", flush=True)
    for line in targets_missed(row):
        print(f"  {line}", flush=True)
    return row


def outcome_row(qlen: int, scenario: str, out: Outcome, note: str = "") -> Row:
    """A row from a collector run, with what went wrong (if anything) in the note."""
    notes = [note] if note else []
    if out.exit_code != 0:
        notes.append(f"exit code {out.exit_code}")
    for name, value in sorted(out.counters.items()):
        if value and (name == "rejected" or name.startswith("dropped")):
            notes.append(f"{name} {n(value)}")
    return Row(
        qlen=qlen,
        scenario=scenario,
        sent=out.sends.sent,
        dropped=out.sends.dropped,
        stored=out.stored,
        stored_rate=out.stored / out.elapsed if out.elapsed > 0 else None,
        recv_rate=out.stored / out.received_in if out.received_in else None,
        rss_mib=mib(sum(out.rss_kib.values())) if out.rss_kib else None,
        note=", ".join(notes),
    )


def timing_text(out: Outcome) -> str:
    """Elapsed times and rates of a blast."""
    text = (
        f"first send to final stored count {out.elapsed:.2f} s (includes the wait for the next "
        f"commit, up to ~1 s): {n(out.stored / out.elapsed)} stored/s"
    )
    if out.received_in:
        text += (
            f"; first send to last receive {out.received_in:.2f} s: "
            f"{n(out.stored / out.received_in)} received/s"
        )
    return text


def loss_detail(out: Outcome) -> str:
    """Where the missing datagrams went, by the collector's own counters."""
    c = out.counters
    return (
        f"\n  LOSS: the kernel accepted {n(out.sends.sent)}; the collector counted received "
        f"{n(c.get('received', 0))}, accepted {n(c.get('accepted', 0))}, rejected "
        f"{n(c.get('rejected', 0))}, dropped:backlog-full {n(c.get('dropped:backlog-full', 0))}"
        f", dropped:memory-full {n(c.get('dropped:memory-full', 0))}; exit code {out.exit_code}"
    )


def print_summary(rows: list[Row], notes: list[str], host_qlen: int) -> None:
    """The final table, ratios, what was skipped or failed, and every missed target."""
    print("\n=== summary ===")
    head = (
        f"{'qlen':<10} {'scenario':<8} {'sent':>9} {'dropped':>9} {'stored':>9} {'loss':>6} "
        f"{'stored/s':>9} {'recv/s':>9} {'RSS MiB':>8}  note"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        label = f"{r.qlen} (host)" if r.qlen == host_qlen else str(r.qlen)
        stored_rate = n(r.stored_rate) if r.stored_rate is not None else "-"
        recv_rate = n(r.recv_rate) if r.recv_rate is not None else "-"
        rss = f"{r.rss_mib:.1f}" if r.rss_mib is not None else "-"
        print(
            f"{label:<10} {r.scenario:<8} {r.sent:>9,} {r.dropped:>9,} {r.stored:>9,} "
            f"{r.loss:>6,} {stored_rate:>9} {recv_rate:>9} {rss:>8}  {r.note}"
        )
    print(
        "sent = accepted by the kernel; dropped = EAGAIN at the sender; loss = sent - stored;\n"
        "stored/s = stored / (first send .. final count in the database, commit wait included);\n"
        "recv/s = stored / (first send .. receive of the last datagram); bare: stored = "
        "received;\nRSS = peak (VmHWM) of the daemon + its receive process"
    )
    for qlen in dict.fromkeys(r.qlen for r in rows):
        for line in ratios([r for r in rows if r.qlen == qlen]):
            print(f"qlen {qlen}: {line}")
    for line in notes:
        print(line)
    if not any(r.qlen == TARGET_QLEN for r in rows):
        print(
            f"not evaluated: the qlen {TARGET_QLEN} targets (blast >= {n(TARGET_BLAST_RATE)} "
            "stored/s, steady without drops), for want of that measurement"
        )
    missed = [line for r in rows for line in targets_missed(r)]
    print("\n".join(missed) if missed else "no target missed")

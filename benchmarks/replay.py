"""Replay and log-adapter throughput: sessions/s into the store, log lines/s, peak RSS.

1. ``tlsrpt-reporter replay --into-db`` on a session log of N sessions (samplegen's skewed mix
   of domains, policies and failures, each with a ``ts`` spread over one day);
2. ``tlsrpt-reporter ingest-log --format postfix`` on a Postfix log of N lines (TLS lines,
   deliveries, failures of every kind, and the qmgr/cleanup/smtpd lines around them).

Each command runs in its own process on a fresh database; its wall time and peak RSS (from
``wait4``) are printed, and the stored totals are checked against what was generated.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from harness.measure import machine_lines, timed

from tlsrpt_reporter.demo import samplegen
from tlsrpt_reporter.store import collected as store

DAY = "2026-11-30"
DAY_START = 1_796_083_200 - 86_400  # 2026-11-30T00:00:00Z
TARGET_SESSIONS = 100_000
TARGET_LINES = 50_000
_MONTH_DAY = "Nov 30"


def write_session_log(path: Path, count: int) -> None:
    """``count`` samplegen sessions, each with a ``ts`` on DAY."""
    step = 86_400 / count
    with path.open("wb") as out:
        for i, raw in enumerate(samplegen.sessions(8460, 10_000, count)):
            when = time.gmtime(DAY_START + int(i * step))
            ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", when).encode()
            out.write(raw[:-1] + b',"ts": "' + ts + b'"}\n')


# What a connection's outcome looks like in Postfix's log, with its weight and what it counts.
_NOT_VERIFIED = "deferred (Server certificate not verified)"
_OUTCOMES = (
    (90.0, "Verified", None, "sent (250 2.0.0 Ok: queued)"),
    (4.0, "Trusted", None, "sent (250 2.0.0 Ok: queued)"),
    (2.0, "Untrusted", "num=10:certificate has expired", _NOT_VERIFIED),
    (1.0, "Untrusted", "num=18:self-signed certificate", _NOT_VERIFIED),
    (1.0, "Untrusted", "num=62:hostname mismatch", _NOT_VERIFIED),
    (2.0, None, None, "deferred (TLS is required, but was not offered by host {mx}[{ip}])"),
)


def write_postfix_log(path: Path, lines: int) -> tuple[int, int]:
    """A Postfix log of about ``lines`` lines; returns (sessions, failed sessions) in it."""
    rng = random.Random(25)
    domains = [f"d{i}.example" for i in range(10_000)]
    weights = [1.0 / (rank + 1) for rank in range(len(domains))]
    written = sessions = failed = 0
    n = 0
    with path.open("w") as out:
        while written < lines:
            n += 1
            second = n * 86_399 // (lines // 5)
            ts = f"{_MONTH_DAY} {second // 3600 % 24:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
            pid = 1000 + n % 30_000
            qid = f"{n:010X}"
            domain = rng.choices(domains, weights=weights)[0]
            mx, ip = f"mx{n % 3}.{domain}", f"198.51.{n % 200}.{n % 250 + 1}"
            _, trust, why, status = rng.choices(_OUTCOMES, weights=[o[0] for o in _OUTCOMES])[0]
            head = f"{ts} mta1 postfix"
            block = [
                f"{head}/smtpd[{pid + 1}]: connect from client[192.0.2.9]",
                f"{head}/cleanup[{pid + 2}]: {qid}: message-id=<{n}@example.net>",
                f"{head}/qmgr[900]: {qid}: from=<s@example.net>, size=1234, nrcpt=1 (queue active)",
            ]
            if why:
                block.append(
                    f"{head}/smtp[{pid}]: server certificate verification failed for "
                    f"{mx}[{ip}]:25: {why}"
                )
            if trust:
                block.append(
                    f"{head}/smtp[{pid}]: {trust} TLS connection established to {mx}[{ip}]:25: "
                    "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange "
                    "X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256"
                )
            text = status.format(mx=mx, ip=ip)
            block.append(
                f"{head}/smtp[{pid}]: {qid}: to=<u{n}@{domain}>, relay={mx}[{ip}]:25, delay=0.4, "
                f"delays=0.1/0/0.1/0.2, dsn={'2.0.0' if text.startswith('sent') else '4.7.5'}, "
                f"status={text}"
            )
            block.append(f"{head}/qmgr[900]: {qid}: removed")
            out.write("\n".join(block) + "\n")
            written += len(block)
            sessions += 1
            failed += not text.startswith("sent")
    return sessions, failed


def totals(db: Path) -> tuple[int, int]:
    """(successful, failed) sessions stored for DAY."""
    conn = store.connect(db, create=False)
    try:
        ok = bad = 0
        for row in store.iter_day(conn, DAY):
            ok += row["summary"]["total-successful-session-count"]
            bad += row["summary"]["total-failure-session-count"]
        return ok, bad
    finally:
        conn.close()


def main() -> int:
    """Run the scenarios and print their figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=1_000_000, help="session-log size")
    p.add_argument("--lines", type=int, default=1_000_000, help="Postfix log size")
    args = p.parse_args()
    cli = [sys.executable, "-m", "tlsrpt_reporter.cli"]
    print("\n".join(machine_lines()))
    with tempfile.TemporaryDirectory(prefix="tlsrpt-bench-") as tmp:
        work = Path(tmp)
        sessions_log = work / "sessions.jsonl"
        write_session_log(sessions_log, args.sessions)
        db = work / "replay.sqlite"
        wall, rss, _ = timed([*cli, "replay", str(sessions_log), "--into-db", str(db)], work)
        ok, bad = totals(db)
        rate = args.sessions / wall
        print(
            f"replay --into-db: {args.sessions:,} sessions in {wall:.1f} s = {rate:,.0f} "
            f"sessions/s, peak RSS {rss:.1f} MiB, stored {ok + bad:,}"
            + ("" if ok + bad == args.sessions else "  STORED COUNT WRONG")
            + ("" if rate >= TARGET_SESSIONS else f"  TARGET MISSED ({TARGET_SESSIONS:,}/s)")
        )

        postfix_log = work / "mail.log"
        made, failed = write_postfix_log(postfix_log, args.lines)
        lines = sum(1 for _ in postfix_log.open("rb"))
        db = work / "postfix.sqlite"
        wall, rss, _ = timed(
            [*cli, "ingest-log", "--format", "postfix", "--timezone", "UTC", str(postfix_log),
             "--db", str(db)], work,
        )  # fmt: skip
        ok, bad = totals(db)
        rate = lines / wall
        print(
            f"ingest-log postfix: {lines:,} lines ({made:,} sessions) in {wall:.1f} s = "
            f"{rate:,.0f} lines/s, peak RSS {rss:.1f} MiB, stored {ok + bad:,} "
            f"({bad:,} failed)"
            + ("" if (ok + bad, bad) == (made, failed) else "  STORED COUNT WRONG")
            + ("" if rate >= TARGET_LINES else f"  TARGET MISSED ({TARGET_LINES:,}/s)")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

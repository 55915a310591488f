"""Report building benchmark: build, validate and DKIM-sign the reports of a generated day.

    python benchmarks/report.py [--domains 10000] [--sessions 200000]

Prints the time for each stage, reports per second and the peak RSS. Target (issue 3): 10,000
domains in under two minutes on a 2-core machine with RSA-2048 signing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from harness.measure import machine_lines, own_peak_rss_mib

from tlsrpt_reporter.config.schema import ReporterConfig
from tlsrpt_reporter.deliver import bulk_sign, dkim, mail
from tlsrpt_reporter.demo.samplegen import sessions
from tlsrpt_reporter.report import sources
from tlsrpt_reporter.schedule.build import build_reports
from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.wire.aggregate import Aggregate
from tlsrpt_reporter.wire.decode import decode
from tlsrpt_reporter.wire.encode import datagram

DAY = "2026-03-01"
TARGET_SECONDS = 120.0


def main() -> int:
    """Run the benchmark and print its figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--domains", type=int, default=10_000)
    p.add_argument("--sessions", type=int, default=200_000)
    args = p.parse_args()
    print("\n".join(machine_lines()))
    with tempfile.TemporaryDirectory(prefix="tlsrpt-report-bench-") as tmp:
        db = Path(tmp) / "collectd.sqlite"
        started = time.perf_counter()
        agg = Aggregate()
        # Every domain gets one session, the rest follow the skewed mix of real mail.
        for raw in sessions(7, args.domains, args.sessions):
            agg.add(DAY, 1_772_330_000.0, decode(raw))
        for index in range(args.domains):
            name = f"d{index:05d}.example"
            policy = {"policy-type": 9, "t": 0, "f": 0}
            raw = datagram(name, [policy], f"v=TLSRPTv1; rua=mailto:r@{name}")
            agg.add(DAY, 1_772_330_000.0, decode(raw))
        conn = store.connect(db)
        store.write(conn, store.build_batch(agg))
        conn.close()
        del agg
        print(f"generated {args.sessions:,} sessions over {args.domains:,} domains "
              f"in {time.perf_counter() - started:.1f} s (not part of the figures)")  # fmt: skip

        cfg = ReporterConfig(organization_name="Bench Mail", contact_info="tlsrpt@bench.example",
                             sources=(str(db),))  # fmt: skip
        key_path = Path(tmp) / "key.pem"
        key_path.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=2048)
                             .private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))  # fmt: skip
        key = dkim.DkimKey("bench.example", "tlsrpt", key_path)

        t0 = time.perf_counter()
        data = sources.read_day(cfg.sources, DAY)
        t1 = time.perf_counter()
        rows, _ = build_reports(cfg, DAY, data, time.time(), instance="bench")  # + validates
        t2 = time.perf_counter()
        date = dt.datetime.now(dt.UTC)
        messages = []
        for row in rows:
            messages.append(mail.compose(
                report_domain=row["domain"], submitter="bench.example",
                report_id=row["report_id"], from_addr="tlsrpt@bench.example",
                to_addrs=[f"tlsrpt@{row['domain']}"], gzip_body=row["gzip"],
                filename=row["filename"], summary_text=row["summary"], date=date,
                message_id=row["message_id"],
            ))  # fmt: skip
        signed = sum(len(m) for m in bulk_sign.sign_all(messages, [key]))
        t3 = time.perf_counter()
        total = t3 - t0
        n = len(rows)
        print(f"read the day from SQLite: {t1 - t0:.2f} s")
        print(f"build + schema-validate {n:,} reports: {t2 - t1:.2f} s ({n / (t2 - t1):,.0f}/s)")
        cores = os.cpu_count()
        print(f"compose + RSA-2048 DKIM-sign {n:,} mails on {cores} cores: {t3 - t2:.2f} s "
              f"({n / (t3 - t2):,.0f}/s, {signed / n / 1024:.1f} KiB each)")  # fmt: skip
        print(f"total: {total:.1f} s for {n:,} domains = {n / total:,.0f} reports/s; "
              f"peak RSS {own_peak_rss_mib():.0f} MiB")  # fmt: skip
        if n >= 10_000 and total > TARGET_SECONDS:
            print(f"TARGET MISSED: {total:.0f} s > {TARGET_SECONDS:.0f} s for {n:,} domains")
        elif n >= 10_000:
            print(f"target met: {n:,} domains in {total:.0f} s (< {TARGET_SECONDS:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

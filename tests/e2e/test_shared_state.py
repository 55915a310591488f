"""Two reporters on one PostgreSQL state database (issue 16): each day built once, each report
delivered once while both run, and a reporter killed mid-delivery loses nothing: the other
takes its claim over once it expires and sends the same stored bytes (the same Report-ID).

Real parts: `tlsrpt-reporter send` processes, the session's throwaway PostgreSQL server, an
aiosmtpd relay on loopback, a loopback DNS server."""

from __future__ import annotations

import email
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from rigs.dnsserver import DnsServer
from rigs.postgres import SUPERUSER, Cluster
from rigs.smtpserver import Received, SmtpServer
from support.site import one_day_site

from tlsrpt_reporter.config.load import load as load_config
from tlsrpt_reporter.schedule import build as schedule
from tlsrpt_reporter.schedule import timing
from tlsrpt_reporter.store import reports as state

DOMAINS = [f"d{i:02d}.example" for i in range(30)]
AFTER_DAY = timing.day_end("2026-03-01") + 3600


def _records() -> dict[str, str | None]:
    return {domain: f"v=TLSRPTv1; rua=mailto:tlsrpt@{domain}" for domain in DOMAINS}


def _config(tmp: Path, cluster: Cluster, name: str, relay: int, dns: int, extra: str = "") -> Path:
    cluster.create_database(name)
    url = cluster.url(name, SUPERUSER)
    return one_day_site(
        tmp, _records(), relay_port=relay, dns_port=dns, state_db=url, reporter_extra=extra
    )


def _send(config: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "tlsrpt_reporter.cli", "send", "--now", "--config", str(config)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _report_ids(messages: list[Received]) -> dict[str, list[str]]:
    """Recipient domain -> the Report-ID of each mail it received (from the Subject)."""
    found: dict[str, list[str]] = defaultdict(list)
    for message in messages:
        subject = str(email.message_from_bytes(message.data)["Subject"])
        found[message.rcpt_tos[0].rpartition("@")[2]].append(subject.rpartition("Report-ID: ")[2])
    return found


def _sent(stdout: str) -> int:
    """The number of deliveries a `send` reports as sent."""
    words = stdout.split("deliveries: ", 1)[1].split()
    return int(words[0])


def test_two_reporters_build_each_day_once_and_deliver_each_report_once(
    tmp_path: Path, pg_cluster: Cluster
) -> None:
    with SmtpServer() as relay, DnsServer({}) as dns:
        config = _config(tmp_path, pg_cluster, "two_reporters", relay.port, dns.port)
        first, second = _send(config), _send(config)
        outs = [proc.communicate(timeout=120) for proc in (first, second)]
        assert [first.returncode, second.returncode] == [0, 0], outs
        received = _report_ids(relay.messages)
    assert sorted(received) == DOMAINS
    assert all(len(ids) == 1 for ids in received.values()), "each report delivered once"
    assert sum(_sent(out) for out, _ in outs) == len(DOMAINS), "no attempt made twice"
    builds = [err.count("built 30 reports for 2026-03-01") for _, err in outs]
    assert sorted(builds) == [0, 1], "the day was built by one of them"
    conn = state.connect(load_config(str(config)).reporter.db)
    assert conn.execute("SELECT day, reports FROM built_day").fetchall() == [("2026-03-01", 30)]
    assert conn.execute("SELECT count(*) FROM report WHERE status = 'delivered'").fetchone() == (
        30,
    )


def test_a_reporter_killed_mid_delivery_leaves_nothing_lost_and_a_duplicate_alike(
    tmp_path: Path, pg_cluster: Cluster
) -> None:
    victim: dict[str, int] = {}

    def kill_at_fifth(message: Received) -> None:
        # The fifth mail is stored, its 250 not yet sent: the reporter dies not knowing it
        # was accepted, holding the delivery's claim.
        if len(relay.messages) == 5 and "pid" in victim:
            os.kill(victim.pop("pid"), signal.SIGKILL)

    with SmtpServer(on_data=kill_at_fifth) as relay, DnsServer({}) as dns:
        # One delivery at a time: exactly one is in flight when the reporter dies.
        config = _config(tmp_path, pg_cluster, "killed_reporter", relay.port, dns.port,
                         extra="delivery_lanes = 1\n")  # fmt: skip
        cfg = load_config(str(config)).reporter
        conn = state.connect(cfg.db)
        schedule.build_due(cfg, conn, AFTER_DAY, random.Random(1))
        doomed = _send(config)
        victim["pid"] = doomed.pid
        doomed.communicate(timeout=120)
        assert doomed.returncode == -signal.SIGKILL
        assert len(relay.messages) == 5
        (held,) = conn.execute(
            "SELECT lease_until FROM delivery WHERE lease_holder != '' AND state != 'sent'"
        ).fetchall()
        assert held[0] > time.time() + 60, "claimed for the attempt deadline (300 s) and more"

        # The other reporter leaves the claimed delivery alone while the claim runs ...
        out, err = _send(config).communicate(timeout=120)
        assert _sent(out) == 25 and len(relay.messages) == 30, err
        # ... and takes it over once it has expired: the claim's end is moved to now, as if
        # the attempt deadline had passed.
        conn.execute("UPDATE delivery SET lease_until = ? WHERE lease_holder != ''", (time.time(),))
        out, err = _send(config).communicate(timeout=120)
        assert _sent(out) == 1, err
        received = _report_ids(relay.messages)
    assert sorted(received) == DOMAINS, "nothing lost"
    counts = Counter({domain: len(ids) for domain, ids in received.items()})
    (twice,) = [domain for domain, n in counts.items() if n == 2]
    assert set(counts.values()) == {1, 2}
    assert len(set(received[twice])) == 1, "the duplicate carries the same Report-ID"
    assert conn.execute("SELECT count(*) FROM report WHERE status = 'delivered'").fetchone() == (
        30,
    )

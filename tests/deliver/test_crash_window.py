"""A `send` killed (SIGKILL) right after a receiver's final answer does not send that report
again: the acceptance is committed the moment the answer arrives, before QUIT (SMTP) or before
the answer's body is read (HTTPS), in a transaction of its own (deliver.attempt.Handover,
store.accepted). The servers themselves check the state database and kill the sender at that
moment, so nothing here depends on timing.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import trustme
from rigs.dnsserver import DnsServer
from rigs.slowpeers import Request, ScriptedHttps, ScriptedSmtp
from support.site import one_day_site

# How long the HTTPS server waits for the acceptance to show in the database: generous, since
# with the acceptance recorded only after the body (which never comes) it would never show.
_WAIT_FOR_RECORD = 60.0


def _site(tmp: Path, records: dict[str, str], *, relay_port: int, dns_port: int, ca: Path) -> Path:
    """A collected day with one session per domain of ``records`` (domain -> its TLSRPT
    record), and the configuration of a reporter sending it; returns the configuration."""
    return one_day_site(tmp, dict(records), relay_port=relay_port, dns_port=dns_port, ca_file=ca)


def _send_cmd(config: Path) -> list[str]:
    return [sys.executable, "-m", "tlsrpt_reporter.cli", "send", "--now", "--config", str(config)]


def _send(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _send_cmd(config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _send_again(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_send_cmd(config), capture_output=True, text=True, timeout=120)


def _states(db: Path) -> dict[str, str]:
    with sqlite3.connect(db, timeout=10) as conn:
        return dict(conn.execute("SELECT destination, state FROM delivery").fetchall())


def test_send_killed_after_the_relays_answer_to_data_does_not_resend_on_the_next_run(
    tmp_path: Path,
) -> None:
    domains = [f"k{n}.example" for n in range(6)]
    db = tmp_path / "reporter.sqlite"
    sender: list[subprocess.Popen[str]] = []
    quits: list[list[str]] = []
    at_kill: dict[str, str] = {}  # the recipient whose QUIT came third -> its state then

    def kill_on_third_quit(rcpts: list[str]) -> None:
        # Our client says QUIT only after the 250 to the end of DATA: killed here, it has had
        # the final answer and nothing after it.
        quits.append(rcpts)
        if len(quits) == 3:
            (rcpt,) = rcpts
            at_kill[rcpt] = _states(db)[f"mailto:{rcpt}"]
            os.kill(sender[0].pid, signal.SIGKILL)

    with (
        DnsServer({}) as dns,
        ScriptedSmtp("relay", on_quit=kill_on_third_quit) as relay,
    ):
        records = {d: f"v=TLSRPTv1; rua=mailto:tls@{d}" for d in domains}
        ca = tmp_path / "ca.pem"
        trustme.CA().cert_pem.write_to_path(str(ca))
        config = _site(tmp_path, records, relay_port=relay.port, dns_port=dns.port, ca=ca)
        sender.append(_send(config))
        sender[0].communicate(timeout=120)
        assert sender[0].returncode == -signal.SIGKILL
        (killed_at,) = at_kill
        assert at_kill[killed_at] == "sent", "the acceptance was committed before QUIT"
        recorded = {d for d, st in _states(db).items() if st == "sent"}
        again = _send_again(config)
        assert again.returncode == 0, again.stderr
        received = [rcpt for rcpts, _ in relay.messages for rcpt in rcpts]
    assert f"mailto:{killed_at}" in recorded
    for destination in recorded:
        assert received.count(destination.removeprefix("mailto:")) == 1, destination
    assert set(received) == {f"tls@{d}" for d in domains}
    assert set(_states(db).values()) == {"sent"}


def test_send_killed_after_an_https_2xx_status_does_not_resend_on_the_next_run(
    tmp_path: Path,
) -> None:
    db = tmp_path / "reporter.sqlite"
    sender: list[subprocess.Popen[str]] = []
    at_kill: dict[str, str] = {}

    def kill_once_recorded(request: Request) -> None:
        # The status line and headers are out, the body never comes: the acceptance must be
        # in the database now, with the body still unread.
        url = f"https://{request.host}{request.path}"
        deadline = time.monotonic() + _WAIT_FOR_RECORD
        while _states(db).get(url) != "sent" and time.monotonic() < deadline:
            time.sleep(0.05)
        at_kill[url] = _states(db).get(url, "")
        web.after_status = None  # the next run's POST, if any, is answered in full
        os.kill(sender[0].pid, signal.SIGKILL)

    ca = trustme.CA()
    with (
        DnsServer({"kill.test": [("A", "127.0.0.1")]}) as dns,
        ScriptedHttps(
            tmp_path, ("kill.test",), "web", after_status=kill_once_recorded, ca=ca
        ) as web,
    ):
        url = web.url("kill.test")
        config = _site(tmp_path, {"h.example": f"v=TLSRPTv1; rua={url}"}, relay_port=9,
                       dns_port=dns.port, ca=web.ca_file)  # fmt: skip
        sender.append(_send(config))
        sender[0].communicate(timeout=120)
        assert sender[0].returncode == -signal.SIGKILL
        assert at_kill == {url: "sent"}
        again = _send_again(config)
        assert again.returncode == 0, again.stderr
        requests = list(web.requests)
    assert "attempted 0 deliveries" in again.stdout
    assert len(requests) == 1
    assert _states(db) == {url: "sent"}

"""``run`` stops within moments of SIGTERM whatever it is doing (cli.run_loop): a delivery that
hangs on a trickling relay, with an attempt deadline of ten minutes, is abandoned; the state
stays consistent and a later ``send`` delivers that report, once. A build, which runs without
the event loop, is interrupted inside its transaction, which rolls back.

The bound on the exit (20 s) is generous against the deadline (600 s): a behaviour, not a
timing. Real processes, a real SQLite file, scripted servers on loopback (tests/rigs).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from rigs.dnsserver import DnsServer
from rigs.slowpeers import ScriptedSmtp
from support.site import DAY, one_day_site

from tlsrpt_reporter.cli import run_loop
from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.store.tx import transaction

DEADLINE = 600  # reporter.attempt_deadline: far longer than the test may take
STOPPED_WITHIN = 20.0
DOMAIN = "hang.example"


def _site(tmp: Path, relay_port: int, dns_port: int) -> Path:
    return one_day_site(
        tmp,
        {DOMAIN: f"v=TLSRPTv1; rua=mailto:tls@{DOMAIN}"},
        relay_port=relay_port,
        dns_port=dns_port,
        reporter_extra=f"attempt_deadline = {DEADLINE}\n",
    )


def _reporter(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "tlsrpt_reporter.cli", *args, "--config", str(config)]


def _delivery(db: Path) -> tuple[str, int]:
    with sqlite3.connect(db, timeout=10) as conn:
        (row,) = conn.execute("SELECT state, attempts FROM delivery").fetchall()
    return str(row[0]), int(row[1])


def _wait_for(condition: str, check: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    """Until ``check()`` holds; the test fails if ``proc`` ends or a minute passes first."""
    deadline = time.monotonic() + 60
    while not check():
        assert proc.poll() is None, f"run ended before {condition}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {condition} within a minute"
        time.sleep(0.05)


def test_sigterm_abandons_a_hanging_delivery_at_once_and_a_later_send_delivers_it_once(
    tmp_path: Path,
) -> None:
    db = tmp_path / "reporter.sqlite"
    with DnsServer({}) as dns, ScriptedSmtp("relay", trickle=0.2) as relay:
        config = _site(tmp_path, relay.port, dns.port)
        run = subprocess.Popen(
            _reporter(config, "run"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            # The relay trickles its answer to EHLO and would do so for the whole deadline.
            _wait_for("connection to the relay", lambda: relay.open >= 1, run)
            run.send_signal(signal.SIGTERM)
            _, err = run.communicate(timeout=STOPPED_WITHIN)
        finally:
            if run.poll() is None:
                run.kill()
                run.communicate()
        assert run.returncode == 0, err
        assert "stopping: deliveries under way were abandoned" in err
        assert "reporter stopped" in err
        # Recorded as an attempt before it started; no answer came, so not sent.
        assert _delivery(db) == ("pending", 1)
        assert relay.messages == []

        relay.trickle = 0.0  # the relay recovers
        again = subprocess.run(
            _reporter(config, "send", "--now"), capture_output=True, text=True, timeout=120
        )
        assert again.returncode == 0, again.stderr
        assert [rcpts for rcpts, _ in relay.messages] == [[f"tls@{DOMAIN}"]]
    assert _delivery(db) == ("sent", 2)


def test_a_stop_signal_during_a_build_interrupts_it_and_its_transaction_rolls_back(
    tmp_path: Path,
) -> None:
    conn = state.connect(tmp_path / "reporter.sqlite")

    async def build_interrupted() -> asyncio.Event:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        asyncios_own = signal.getsignal(signal.SIGTERM)
        try:
            # As store.reports.insert_day stores a day: one transaction.
            with (
                pytest.raises(run_loop._Stopped),
                run_loop.interruptible(stop),
                transaction(conn),
            ):
                conn.execute(
                    "INSERT INTO built_day (day, built_at, reports) VALUES (?, 0, 0)", (DAY,)
                )
                os.kill(os.getpid(), signal.SIGTERM)
                deadline = time.monotonic() + 30  # the build's work, cut short by the signal
                while time.monotonic() < deadline:
                    time.sleep(0.01)
                pytest.fail("the signal did not stop the build")
            # The event loop's handler is back for the rest of the loop.
            assert signal.getsignal(signal.SIGTERM) is asyncios_own
            return stop
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    stop = asyncio.run(build_interrupted())
    assert stop.is_set()
    assert conn.execute("SELECT count(*) FROM built_day").fetchone() == (0,)
    conn.close()

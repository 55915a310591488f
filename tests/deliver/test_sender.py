"""What the sender puts on the wire and when it comes back (deliver.sender), end to end through
the site's real relay, HTTPS receiver and DNS server: a mail's Date is its first hand-over and
each destination has its own Message-ID, kept for byte-identical retries (RFC 8460 §5.3,
§5.5); an HTTPS redirect is a failed attempt and a Retry-After is honoured inside retry_for
(RFC 8460 §5.4, §5.5)."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.utils
import random
import time
from typing import Any

import pytest
from rigs.httpsserver import Reply
from support.site import DAY, Site, session

from tlsrpt_reporter.cli import commands
from tlsrpt_reporter.config.load import load as load_config
from tlsrpt_reporter.deliver import smtp
from tlsrpt_reporter.schedule import build as schedule
from tlsrpt_reporter.schedule import timing
from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.wire.aggregate import Aggregate
from tlsrpt_reporter.wire.decode import decode


@pytest.fixture
def site(any_site: Site) -> Site:
    """Every test here runs with both state databases: SQLite and PostgreSQL."""
    return any_site


def _collect(site: Site, domain: str, record: str) -> None:
    agg = Aggregate()
    agg.add(DAY, 1_772_330_000.0, decode(session(domain, record)))
    conn = store.connect(site.collector_db)
    store.write(conn, store.build_batch(agg))
    conn.close()


def _rfc5322(when: float) -> str:
    return email.utils.format_datetime(dt.datetime.fromtimestamp(int(when), dt.UTC))


def _deliveries(site: Site, domain: str) -> dict[str, dict[str, Any]]:
    conn = state.connect(site.reporter_db)
    cursor = conn.execute(
        "SELECT delivery.* FROM delivery JOIN report ON report.id = delivery.report"
        " WHERE report.domain = ?",
        (domain,),
    )
    names = [column[0] for column in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    conn.close()
    return {row["destination"]: row for row in rows}


def test_a_mail_is_dated_when_first_handed_over_and_its_retry_is_the_same_bytes(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg_all = load_config(str(site.config))
    cfg = cfg_all.reporter
    sender = commands._sender(cfg, cfg_all.dns)
    built_at = timing.day_end(DAY) + 600
    clock = [built_at + 5000]  # the first hand-over, well after the build
    sender.clock = lambda: clock[0]
    handed: list[tuple[str, bytes]] = []
    real_send = smtp.send

    async def spy(message: bytes, envelope_from: str, rcpts: list[str], *a: Any, **k: Any) -> Any:
        handed.append((rcpts[0], message))
        return await real_send(message, envelope_from, rcpts, *a, **k)

    monkeypatch.setattr(smtp, "send", spy)
    conn = state.connect(site.reporter_db)
    schedule.build_due(cfg, conn, built_at, random.Random(1))
    site.smtp.config.data_reply = "451 4.3.0 Try again later"
    asyncio.run(sender.send_due(conn, force=True))
    first = dict(handed)
    assert set(first) == {"tlsrpt@mail.example", "tls@dns.example"}
    assert site.smtp.messages == []
    site.smtp.config.data_reply = None
    clock[0] += 3600
    asyncio.run(sender.send_due(conn, force=True))
    conn.close()
    retried = dict(handed[len(first) :])
    received = {m.rcpt_tos[0]: m.data for m in site.smtp.messages}
    for rcpt, message in first.items():
        assert retried[rcpt] == message, "a retry is byte-identical to the first attempt"
        assert received[rcpt] == message
        headers = email.message_from_bytes(message)
        # RFC 5322 §3.6.1: the time of the first hand-over to the relay, not the build time.
        assert headers["Date"] == _rfc5322(built_at + 5000)
        assert f"t={int(built_at) + 5000};" in headers["DKIM-Signature"].replace(" ", "")
        domain = rcpt.partition("@")[2]
        row = _deliveries(site, domain)[f"mailto:{rcpt}"]
        assert (row["state"], row["attempts"]) == ("sent", 2)
        assert (f"<{row['message_id']}>", row["date"]) == (headers["Message-ID"], headers["Date"])


def test_each_destination_of_a_report_gets_its_own_message_id(site: Site) -> None:
    _collect(site, "two.example", "v=TLSRPTv1; rua=mailto:a@two.example,mailto:b@two.example")
    assert site.cli("send", "--now").returncode == 0
    mails = {
        m.rcpt_tos[0]: email.message_from_bytes(m.data)
        for m in site.smtp.messages
        if m.rcpt_tos[0].endswith("@two.example")
    }
    a, b = mails["a@two.example"], mails["b@two.example"]
    assert a["Subject"] == b["Subject"], "one report, one Report-ID"
    assert a["Message-ID"] != b["Message-ID"]
    stored = _deliveries(site, "two.example")
    assert f"<{stored['mailto:a@two.example']['message_id']}>" == a["Message-ID"]
    assert f"<{stored['mailto:b@two.example']['message_id']}>" == b["Message-ID"]


def test_an_https_redirect_is_a_failed_attempt_retried_never_followed(site: Site) -> None:
    site.web.script(Reply(302, headers={"Location": site.web.url("/elsewhere")}))
    assert site.cli("send", "--now").returncode == 0
    (row,) = _deliveries(site, "web.example").values()
    assert (row["state"], row["attempts"]) == ("failed-retrying", 1)
    assert "HTTP 302" in row["last_error"] and "not followed" in row["last_error"]
    assert row["error_kind"] == "http-other"
    assert row["next_attempt"] > row["first_attempt"] + 40  # the backoff's, as for any failure
    assert site.cli("send", "--now").returncode == 0
    assert site.deliveries()["web.example"] == ("sent", 2)
    assert [r.path for r in site.web.requests] == ["/v1/tlsrpt", "/v1/tlsrpt"]


@pytest.mark.parametrize(
    ("status", "retry_after", "wait"),
    [
        (503, "7200", 7200.0),
        (429, "in three hours", 3 * 3600.0),  # an HTTP-date, made below
        (503, "200000", None),  # past retry_for (a day): the backoff decides
        (500, "7200", None),  # only 429 and 503 ask to wait
    ],
)
def test_a_retry_after_inside_retry_for_sets_the_next_attempt(
    site: Site, status: int, retry_after: str, wait: float | None
) -> None:
    target = None
    if retry_after == "in three hours":
        # An absolute time: the next attempt is that moment, however long the CLI takes to start.
        target = int(time.time() + 3 * 3600)
        retry_after = email.utils.formatdate(target, usegmt=True)
    site.web.script(Reply(status, headers={"Retry-After": retry_after}))
    assert site.cli("send", "--now").returncode == 0
    (row,) = _deliveries(site, "web.example").values()
    assert row["state"] == "failed-retrying"
    waited = row["next_attempt"] - row["first_attempt"]
    if wait is None:
        assert 45 <= waited <= 80, "the backoff of a first failure: 60 s ± 25 %"
    elif target is not None:
        assert abs(row["next_attempt"] - target) <= 1
    else:
        # Counted from the answer, which came within the attempt: at most the site's HTTPS
        # timeout (5 s) times the total-deadline factor after first_attempt.
        assert wait - 1 <= waited <= wait + 15
    # Not due yet: a pass without --now leaves it alone.
    assert site.cli("send").returncode == 0
    assert len(site.web.requests) == 1

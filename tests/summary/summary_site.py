"""A reporter site with a week of collected sessions ending today, reports sent for real to the
loopback servers of ``support.site``, and the numbers the summary must show, read straight from
the two databases with SQL of the test's own (not the summary's queries)."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.site import Site, make_site, sts

from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.wire.aggregate import Aggregate
from tlsrpt_reporter.wire.decode import decode
from tlsrpt_reporter.wire.encode import datagram

# libtlsrpt result codes (wire.decode.RESULT_CODES)
EXPIRED, NO_STARTTLS, MISMATCH, TLSA_INVALID, FETCH_ERROR = 204, 201, 202, 304, 301


def day(back: int, now: float | None = None) -> str:
    """The UTC day ``back`` days before today."""
    return time.strftime("%Y-%m-%d", time.gmtime((now or time.time()) - back * 86400))


def _sessions(domain: str, record: str | None, ok: int, failed: int, code: int) -> list[bytes]:
    good = datagram(domain, [sts(domain) | {"t": 0, "f": 0}], record)
    detail = {"c": code, "s": "192.0.2.1", "n": f"mx.{domain}", "r": "198.51.100.4"}
    bad = datagram(domain, [sts(domain) | {"failure-details": [detail], "t": 1, "f": 1}], record)
    return [good] * ok + [bad] * failed


def collect_week(site: Site, slow_port: int) -> None:
    """Six finished days and today, for these domains and fates:

    mail.example (mailto, delivered): certificate-expired every day but the last: recovered.
    web.example (https, the first POST answered 503: one delivery retrying): starttls failures
    on the last finished day only: newly failing. dns.example (record from DNS, delivered).
    evil.example (https to a private address: given up), tlsa-invalid every day.
    servfail.example (its record lookup fails: the report stays pending, retried later).
    new.example: seen on the last finished day only, failing: newly failing, not seen before.
    slow.example (https to ``slow_port``, where nothing listens: every delivery retrying).
    """
    web_record = f"v=TLSRPTv1;rua={site.web.url()}"
    slow_record = f"v=TLSRPTv1;rua=https://reports.test:{slow_port}/collect"
    agg = Aggregate()
    for back in range(6, -1, -1):
        d = day(back)
        grams = [
            *_sessions("mail.example", "v=TLSRPTv1; rua=mailto:tlsrpt@mail.example",
                       17 if back > 1 else 20, 3 if back > 1 else 0, EXPIRED),
            *_sessions("web.example", web_record, 6 if back == 1 else 10,
                       4 if back == 1 else 0, NO_STARTTLS),
            *_sessions("dns.example", None, 3, 2 if back == 3 else 0, FETCH_ERROR),
            *_sessions("evil.example", "v=TLSRPTv1; rua=https://evil.test/collect", 2, 1,
                       TLSA_INVALID),
            *_sessions("servfail.example", None, 2, 0, EXPIRED),
        ]  # fmt: skip
        grams += _sessions("slow.example", slow_record, 1, 0, EXPIRED)
        if back == 1:
            grams += _sessions("new.example", "v=TLSRPTv1; rua=mailto:r@new.example", 0, 1,
                               MISMATCH)  # fmt: skip
        if back == 0:  # today, still running: never built
            grams = _sessions("mail.example", "v=TLSRPTv1; rua=mailto:tlsrpt@mail.example",
                              4, 1, EXPIRED)  # fmt: skip
        for raw in grams:
            agg.add(d, time.time(), decode(raw))
    conn = store.connect(site.collector_db)
    store.write(conn, store.build_batch(agg))
    conn.close()


def week_site(tmp: Path, summary_html: Path | None = None) -> Iterator[Site]:
    """A site with :func:`collect_week`'s sessions; with ``summary_html``, the config sets
    reporter.summary_html to it."""
    # Bound but not listening: connections to it are refused for as long as the site lives.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        sites = make_site(tmp)
        try:
            site = next(sites)
            collect_week(site, closed.getsockname()[1])
            if summary_html is not None:
                text = site.config.read_text()
                line = f'summary_html = "{summary_html}"\nnever_report ='
                site.config.write_text(text.replace("never_report =", line))
            yield site
        finally:
            sites.close()


@dataclass
class Week:
    """The site, the page directory of reporter.summary_html, and what ``send --now`` did."""

    site: Site
    page_dir: Path
    send: subprocess.CompletedProcess[str]


@dataclass(frozen=True)
class Truth:
    """What the databases hold for the window [first, last], by the test's own SQL."""

    first: str
    last: str
    per_day: dict[str, tuple[int, int]]  # day -> (sessions, failures)
    per_domain: dict[str, tuple[int, int]]
    result_types: dict[str, int]
    report_statuses: dict[str, int]
    destinations: dict[str, dict[str, int]]  # destination -> state -> count
    next_delivery: float | None
    next_report: float | None


def truth(site: Site, first: str, last: str) -> Truth:
    """The numbers of the window from the databases."""
    c = sqlite3.connect(site.collector_db)
    q: Any = (first, last)
    per_day = {
        d: (s, f)
        for d, s, f in c.execute(
            "SELECT day, sum(successful_session_count + failed_session_count),"
            " sum(failed_session_count) FROM policy_count WHERE day BETWEEN ? AND ? GROUP BY day",
            q,
        )
    }
    per_domain = {
        d: (s, f)
        for d, s, f in c.execute(
            "SELECT domain, sum(successful_session_count + failed_session_count),"
            " sum(failed_session_count) FROM policy_count WHERE day BETWEEN ? AND ?"
            " GROUP BY domain",
            q,
        )
    }
    result_types = dict(
        c.execute(
            "SELECT result_type, sum(failed_session_count) FROM failure_count"
            " WHERE day BETWEEN ? AND ? GROUP BY result_type",
            q,
        ).fetchall()
    )
    c.close()
    r = sqlite3.connect(site.reporter_db)
    statuses = dict(
        r.execute(
            "SELECT status, count(*) FROM report WHERE day BETWEEN ? AND ? GROUP BY status", q
        ).fetchall()
    )
    destinations: dict[str, dict[str, int]] = {}
    for dest, state, n in r.execute(
        "SELECT destination, state, count(*) FROM delivery"
        " JOIN report ON report.id = delivery.report"
        " WHERE day BETWEEN ? AND ? GROUP BY destination, state",
        q,
    ):
        destinations.setdefault(dest, {})[state] = n
    (next_delivery,) = r.execute(
        "SELECT min(next_attempt) FROM delivery WHERE state IN ('pending', 'failed-retrying')"
    ).fetchone()
    (next_report,) = r.execute(
        "SELECT min(max(send_at, coalesce(next_attempt, 0))) FROM report WHERE status = 'pending'"
    ).fetchone()
    r.close()
    return Truth(first, last, per_day, per_domain, result_types, statuses, destinations,
                 next_delivery, next_report)  # fmt: skip

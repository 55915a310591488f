"""What one delivery pass does once rather than per report (deliver.sender): one TLS context for
every POST of the pass, and per delivered report two commits, the attempt before it starts and
the acceptance (with the report's status and the destination's count of the day) when the
answer arrives; nothing is written after it. Through the site's real relay, HTTPS receiver and
DNS server, and a real state database whose statements the test reads."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import ssl
from typing import Any

import pytest
from rigs.httpsserver import Reply
from support.site import DAY, Site, session

from tlsrpt_reporter.cli import commands
from tlsrpt_reporter.config.load import load as load_config
from tlsrpt_reporter.deliver import sender as sending
from tlsrpt_reporter.schedule import build as schedule
from tlsrpt_reporter.schedule import timing
from tlsrpt_reporter.store import collected as store
from tlsrpt_reporter.store import reports as state
from tlsrpt_reporter.wire.aggregate import Aggregate
from tlsrpt_reporter.wire.decode import decode

WEB_DOMAINS = [f"w{n}.example" for n in range(4)]


def _collect_web_reports(site: Site) -> None:
    agg = Aggregate()
    for n, domain in enumerate(WEB_DOMAINS):
        agg.add(
            DAY,
            1_772_330_000.0,
            decode(session(domain, f"v=TLSRPTv1;rua={site.web.url(f'/r{n}')}")),
        )
    conn = store.connect(site.collector_db)
    store.write(conn, store.build_batch(agg))
    conn.close()


def _pass(site: Site, conn: sqlite3.Connection) -> sending.SendSummary:
    cfg_all = load_config(str(site.config))
    sender = commands._sender(cfg_all.reporter, cfg_all.dns)
    schedule.build_due(cfg_all.reporter, conn, timing.day_end(DAY) + 600, random.Random(1))
    return asyncio.run(sender.send_due(conn, force=True))


def test_every_post_of_a_pass_uses_one_tls_context_and_the_next_pass_builds_its_own(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    _collect_web_reports(site)
    built: list[ssl.SSLContext] = []
    real = sending.ssl_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        built.append(real(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(sending, "ssl_context", counted)
    site.web.script(Reply(503))  # the first POST fails: the next pass tries it again
    conn = state.connect(site.reporter_db)
    _pass(site, conn)
    posted = len(site.web.requests)
    assert posted == 1 + len(WEB_DOMAINS)  # web.example's and the four above
    assert len(built) == 1
    assert {r.sni for r in site.web.requests} == {"reports.test"}
    summary = _pass(site, conn)
    conn.close()
    assert (summary.attempted, summary.sent) == (1, 1)
    assert len(built) == 2, "a pass builds its context afresh (the CA bundle may have changed)"


def test_a_delivery_is_two_commits_the_acceptance_counted_with_its_day_and_nothing_after(
    site: Site,
) -> None:
    conn = state.connect(site.reporter_db)
    statements: list[tuple[bool, str]] = []  # (inside a transaction, the statement)
    conn.set_trace_callback(lambda sql: statements.append((conn.in_transaction, sql)))
    summary = _pass(site, conn)
    conn.set_trace_callback(None)
    sent = dict(
        conn.execute("SELECT destination, detail FROM delivery WHERE state = 'sent'").fetchall()
    )
    conn.close()
    mail, web = "mailto:tlsrpt@mail.example", site.web.url()
    assert {mail, web} <= set(sent)
    assert sent[mail].startswith(f"handed to relay 127.0.0.1:{site.smtp.port} (no TLS): 2.0.0 Ok")
    assert sent[web].startswith(f"HTTP 200 OK from {web} at 127.0.0.1")
    for destination in (mail, web):
        # The trace shows each statement with its values: find this destination's.
        mine = [i for i, (_, sql) in enumerate(statements) if f"'{destination}'" in sql]
        (at,) = [i for i in mine if "SET state = 'sent'" in statements[i][1]]
        begin = max(i for i in range(at) if statements[i][1] == "BEGIN IMMEDIATE")
        end = min(i for i in range(at, len(statements)) if statements[i][1] == "COMMIT")
        inside = [sql for _, sql in statements[begin:end]]
        assert any(sql.startswith("UPDATE report SET status") for sql in inside)
        assert any(
            sql.startswith("INSERT INTO destination_day") and f"'{destination}'" in sql
            for sql in inside
        ), "the day's count is committed with the acceptance"
        writes = [i for i in mine if statements[i][1].startswith("UPDATE delivery")]
        (attempt,) = [i for i in writes if i < begin]
        assert not statements[attempt][0], "the attempt is committed on its own, first"
        assert "SET attempts = 1" in statements[attempt][1]
        assert [i for i in writes if i > end] == [], "nothing is written after the acceptance"
    # Outside transactions only the attempts were written: one commit each.
    alone = [sql for inside, sql in statements if not inside and sql.startswith("UPDATE delivery")]
    assert len(alone) == summary.attempted
    assert all("SET attempts = " in sql for sql in alone)

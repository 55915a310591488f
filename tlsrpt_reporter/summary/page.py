"""The summary as one static HTML page (``summary --html DIR``, and after each send when
``reporter.summary_html`` is set), and writing it.

The page needs nothing but itself: no script, charts as inline SVG (``charts``), styles inline,
and a Content-Security-Policy that forbids everything else, so that even a value that escaped
escaping could neither run nor fetch. Every value from data (domains, destinations, error
texts, result types from other hosts' exports) goes through :func:`html.escape`. Numbers carry
``data-`` attributes with their raw values, for tests and for anyone scraping the page.
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path

from tlsrpt_reporter import safefile
from tlsrpt_reporter.errors import TlsRptError, os_fix
from tlsrpt_reporter.summary import charts
from tlsrpt_reporter.summary.model import (
    Change,
    Summary,
    next_send_text,
    percent,
    printable,
)
from tlsrpt_reporter.utc import minute as utc_time

PAGE_NAME = "index.html"
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
NOTHING = "nothing collected yet"

_STYLE = """
:root { color-scheme: light dark; --fg: #1d2430; --muted: #5b6575; --line: #d5dae1;
  --card: #f4f6f9; --bad: #b3261e; --good: #2e7d4f; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e9ee; --muted: #a3acb9;
  --line: #3a4250; --card: #222833; --bad: #ff8a80; --good: #7fd1a0; } }
body { font: 15px/1.45 system-ui, sans-serif; color: var(--fg); margin: 1.5rem auto;
  max-width: 72rem; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.meta, caption, .muted { color: var(--muted); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(11rem, 1fr)); gap: .7rem; }
.card { background: var(--card); border-radius: .5rem; padding: .6rem .8rem; }
.card .value { font-size: 1.35rem; font-weight: 600; display: block; }
.card .label { color: var(--muted); font-size: .85rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
th, td { border-bottom: 1px solid var(--line); padding: .25rem .5rem; text-align: left;
  vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.name { overflow-wrap: break-word; }
.bad { color: var(--bad); } .good { color: var(--good); }
.warning { border-left: 4px solid var(--bad); padding: .3rem .7rem; background: var(--card); }
svg.chart { width: 100%; height: auto; max-width: 760px; display: block; }
svg.chart text { font: 11px system-ui, sans-serif; fill: var(--muted); }
svg.chart .grid { stroke: var(--line); stroke-width: 1; }
.cause { max-width: 40rem; }
"""


def render(summary: Summary) -> str:
    """The whole page."""
    window = f"{summary.first_day} to {summary.last_day}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>TLS-RPT summary, {escape(window)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>TLS-RPT summary</h1>",
        f'<p class="meta" id="window" data-first="{summary.first_day}" '
        f'data-last="{summary.last_day}">{escape(window)}, made '
        f"{escape(utc_time(summary.generated_at))}</p>",
    ]
    for failure in summary.failed_sources:
        parts.append(f'<p class="warning">source unreadable: {_e(failure)}</p>')
    if summary.empty:
        parts.append(f'<p id="nothing">{NOTHING}: no sessions in the sources and no report '
                     f"built in {escape(window)}.</p>")  # fmt: skip
    else:
        parts += [
            _overview(summary),
            _days(summary),
            _domains(summary),
            _result_types(summary),
            _changes(summary),
            _reports(summary),
            _suppressed(summary),
        ]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write(directory: str | os.PathLike[str], summary: Summary) -> Path:
    """Write the page into ``directory`` (created if missing) as :data:`PAGE_NAME`, replacing
    the previous one at once: a web server serving it never sees half a page."""
    target = Path(directory) / PAGE_NAME
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        safefile.replace(target, render(summary).encode("utf-8"), 0o644)
    except OSError as exc:
        raise TlsRptError(f"summary page: cannot write {target}: {os_fix(exc, target)}") from None
    return target


def _e(value: str, limit: int = 300) -> str:
    """A value from data, made printable, bounded and escaped."""
    return escape(printable(value, limit))


def _num(field: str, value: int) -> str:
    return f'<td class="num" data-field="{field}" data-value="{value}">{value:,}</td>'


def _rate(field: str, share: float) -> str:
    cls = "num bad" if share > 0 else "num"
    return f'<td class="{cls}" data-field="{field}" data-value="{share:.6f}">{percent(share)}</td>'


def _card(ident: str, label: str, value: str, raw: str) -> str:
    return (
        f'<div class="card"><span class="value" id="{ident}" data-value="{escape(raw)}">'
        f'{value}</span><span class="label">{escape(label)}</span></div>'
    )


def _overview(s: Summary) -> str:
    day = s.day or "-"
    r = s.reports
    cards = [
        _card("sessions", "sessions, whole window", f"{s.sessions:,}", str(s.sessions)),
        _card("failures", "failed sessions, whole window", f"{s.failures:,}", str(s.failures)),
        _card("failure-rate", "failure rate, whole window", percent(s.failure_rate),
              f"{s.failure_rate:.6f}"),
        _card("day-sessions", f"sessions on {day}", f"{s.day_sessions:,}", str(s.day_sessions)),
        _card("day-failure-rate", f"failure rate on {day}", percent(s.day_failure_rate),
              f"{s.day_failure_rate:.6f}"),
        _card("failing-domains", f"of {s.domain_count:,} recipient domains failed",
              f"{s.failing_domain_count:,}", str(s.failing_domain_count)),
        _card("reports-delivered", f"of {r.built:,} reports delivered", f"{r.delivered:,}",
              str(r.delivered)),
    ]  # fmt: skip
    nxt = escape(next_send_text(s.next_send, s.generated_at))
    at = "" if s.next_send.at is None else f"{s.next_send.at:.0f}"
    return (
        f'<section id="overview"><div class="cards">{"".join(cards)}</div>'
        f'<p id="next-report" data-at="{at}"><strong>Next report:</strong> {nxt}</p></section>'
    )


def _days(s: Summary) -> str:
    rows = []
    for d in s.days:
        if not (d.sessions or d.reports or d.built):
            continue
        note = "" if d.finished else ' <span class="muted">(running)</span>'
        reports = (
            _num("reports", d.reports)
            if d.built or d.reports
            else ('<td class="num muted" data-field="reports" data-value="">not built</td>')
        )
        rows.append(
            f'<tr class="day" data-day="{escape(d.day)}"><td>{escape(d.day)}{note}</td>'
            f"{_num('sessions', d.sessions)}{_num('failures', d.failures)}"
            f"{_rate('failure-rate', d.failure_rate)}{reports}{_num('delivered', d.delivered)}"
            f"{_num('retrying', d.retrying)}{_num('unsent', d.unsent)}"
            f"{_num('given-up', d.given_up)}{_num('no-destination', d.no_destination)}</tr>"
        )
    head = _head("day", "sessions", "failed", "failure rate", "reports", "delivered",
                 "retrying", "unsent", "given up", "no destination")  # fmt: skip
    return (
        '<section id="days"><h2>Per day</h2>'
        f"{charts.daily_sessions(s.days)}{charts.daily_failure_rate(s.days)}"
        f'<table id="day-table">{head}<tbody>{"".join(rows)}</tbody></table></section>'
    )


def _head(*names: str) -> str:
    """A table head: the first column and those named with a leading ``<`` hold text, the
    others numbers (right-aligned)."""
    cells = "".join(
        f'<th>{escape(n.lstrip("<"))}</th>' if i == 0 or n.startswith("<")
        else f'<th class="num">{escape(n)}</th>'
        for i, n in enumerate(names)
    )  # fmt: skip
    return f"<thead><tr>{cells}</tr></thead>"


def _rate_bar(share: float) -> str:
    width = max(0.0, min(1.0, share)) * 80
    return (
        '<svg viewBox="0 0 80 8" width="80" height="8" aria-hidden="true">'
        '<rect width="80" height="8" fill="#8884"/>'
        f'<rect width="{width:.1f}" height="8" fill="{charts.FAIL_COLOUR}"/></svg>'
    )


def _domains(s: Summary) -> str:
    rows = []
    for d in s.domains:
        kinds = ", ".join(f"{_e(k)} {v:,}" for k, v in d.result_types.items())
        rows.append(
            f'<tr class="domain" data-domain="{_e(d.domain)}"><td class="name">{_e(d.domain)}'
            f"</td>{_num('sessions', d.sessions)}{_num('failures', d.failures)}"
            f"{_rate('failure-rate', d.failure_rate)}<td>{_rate_bar(d.failure_rate)}</td>"
            f"{_num('day-sessions', d.day_sessions)}{_num('day-failures', d.day_failures)}"
            f"<td>{kinds}</td></tr>"
        )
    shown = len(s.domains)
    more = f" The {shown:,} with the most failures are shown." if s.domain_count > shown else ""
    head = _head("domain", "sessions", "failed", "failure rate", "<", f"sessions {s.day}",
                 f"failed {s.day}", "<result types")  # fmt: skip
    return (
        '<section id="domains"><h2>Recipient domains</h2>'
        f'<p class="muted" id="domain-count" data-value="{s.domain_count}">'
        f"{s.domain_count:,} recipient domains in the window, {s.failing_domain_count:,} with "
        f'failed sessions.{more}</p><table id="domain-table">{head}'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _result_types(s: Summary) -> str:
    if not s.result_types:
        return ('<section id="result-types"><h2>Failures by result type</h2>'
                '<p class="muted">No failure details were collected.</p></section>')  # fmt: skip
    rows = []
    for r in s.result_types:
        name = _e(r.result_type)
        cause = escape(r.cause) if r.cause else "Not one of the RFC 8460 result types."
        fix = f'<br><span class="muted">Fix: {escape(r.fix)}</span>' if r.fix else ""
        rows.append(
            f'<tr class="result-type" data-result-type="{name}"><td><code>{name}</code></td>'
            f"{_num('failures', r.failures)}{_num('day-failures', r.day_failures)}"
            f'{_num("domains", r.domains)}<td class="cause">{cause}{fix}</td></tr>'
        )
    head = _head("result type", "failed", f"failed {s.day}", "domains", "<likely cause")
    return (
        '<section id="result-types"><h2>Failures by result type</h2>'
        f"{charts.result_type_bars(s.result_types)}"
        f'<table id="result-type-table">{head}<tbody>{"".join(rows)}</tbody></table></section>'
    )


def _change_table(ident: str, title: str, changes: list[Change], day: str | None) -> str:
    if not changes:
        none = f'<p class="muted" id="{ident}-none">None on {escape(day or "-")}.</p>'
        return f"<h3>{escape(title)}</h3>{none}"
    rows = [
        f'<tr class="change" data-domain="{_e(c.domain)}"><td class="name">{_e(c.domain)}</td>'
        f"{_num('sessions', c.sessions)}{_num('failures', c.failures)}"
        f"<td>{escape(c.previous_day or 'not seen before')}</td>"
        f"{_num('previous-sessions', c.previous_sessions)}"
        f"{_num('previous-failures', c.previous_failures)}</tr>"
        for c in changes
    ]
    head = _head("domain", "sessions", "failed", "<previous day", "sessions then", "failed then")
    return (f'<h3>{escape(title)}</h3><table id="{ident}">{head}'
            f'<tbody>{"".join(rows)}</tbody></table>')  # fmt: skip


def _changes(s: Summary) -> str:
    return (
        f'<section id="changes"><h2>Changes on {escape(s.day or "-")}</h2>'
        '<p class="muted">Each domain against its previous day with sessions in the window.</p>'
        + _change_table("newly-failing", "Newly failing", s.newly_failing, s.day)
        + _change_table("recovered", "Recovered", s.recovered, s.day)
        + "</section>"
    )


def _suppressed(s: Summary) -> str:
    """The dead destinations (deliver.dead); nothing when there are none."""
    if not s.suppressed:
        return ""
    rows = [
        f'<tr class="suppressed" data-destination="{_e(e.destination)}">'
        f'<td class="name">{_e(e.destination)}</td><td>{escape(utc_time(e.until))}</td>'
        f'{_num("failed-days", e.failed_days)}<td class="name">{_e(e.reason, 200)}</td></tr>'
        for e in s.suppressed
    ]
    head = _head("<destination", "<until", "failed days", "<last error")
    return (
        '<section id="suppressed"><h2>Suppressed destinations</h2><p class="muted">Every '
        "delivery to these failed day after day: no report goes to them until the date, "
        "unless <code>tlsrpt-reporter unsuppress</code> releases them.</p>"
        f'<table id="suppressed-table">{head}<tbody>{"".join(rows)}</tbody></table></section>'
    )


def _reports(s: Summary) -> str:
    r = s.reports
    totals = (
        '<table id="report-totals">'
        + _head("reports", "built", "delivered", "sending", "retrying", "pending", "given up",
                "no destination", "set aside")
        + "<tbody><tr><td>all days of the window</td>"
        + "".join(_num(f, v) for f, v in (
            ("built", r.built), ("delivered", r.delivered), ("sending", r.sending),
            ("retrying", r.retrying), ("pending", r.pending), ("given-up", r.given_up),
            ("no-destination", r.no_destination), ("set-aside", r.set_aside)))
        + "</tr></tbody></table>"
    )  # fmt: skip
    rows = [
        f'<tr class="destination" data-destination="{_e(d.destination)}">'
        f'<td class="name">{_e(d.destination)}</td>{_num("reports", d.reports)}'
        f"{_num('delivered', d.sent)}{_num('retrying', d.retrying)}{_num('waiting', d.pending)}"
        f'{_num("given-up", d.given_up)}<td class="name">{_e(d.last_error, 200)}</td></tr>'
        for d in s.destinations
    ]
    shown = len(s.destinations)
    more = (f'<p class="muted">The {shown:,} of {s.destination_count:,} destinations with the '
            "most trouble are shown.</p>") if s.destination_count > shown else ""  # fmt: skip
    head = _head("destination", "reports", "delivered", "retrying", "waiting", "given up",
                 "<last error")  # fmt: skip
    return (
        f'<section id="reports"><h2>Our reports</h2>{totals}<h3>Per destination</h3>{more}'
        f'<table id="destination-table">{head}<tbody>{"".join(rows)}</tbody></table></section>'
    )

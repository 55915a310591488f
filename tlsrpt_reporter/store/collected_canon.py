"""The collector database's step to version 3: every day's stored rows rewritten into the
canonical forms (docs/canonical-forms.md, ``wire.canon``), which the collector's decoder applies
at intake since that version.

Rows stored by older versions may spell one policy or failure detail in several ways (a TLSA
RRset in another order, an address with a zone, a whole EHLO reply as the helo): each day's
lines are read, put in canonical form, merged where they became equal (session and failure
counts summed, the earliest first and the latest last sighting kept) and written back under
the keys the collector computes now, so that its later upserts add to the same rows. A line
``wire.canon`` refuses (a policy-string element too long to keep whole) is dropped, and its
sessions counted in the day's :data:`DROPPED_TOO_LONG` counter.

Runs inside the migration's transaction (``collected_schema.migrate``): it opens none.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from tlsrpt_reporter.model import DETAIL_FIELDS, FailureDetail, Policy
from tlsrpt_reporter.store.collected_rows import build_batch, execute_batch, stored_lines
from tlsrpt_reporter.wire import canon
from tlsrpt_reporter.wire.aggregate import Aggregate, PolicyCounts, PolicyKey

# Per-day counter: sessions of stored lines the migration dropped (a policy-string element
# too long to keep whole, which the decoder now rejects as ``rejected:policy-string-too-long``).
DROPPED_TOO_LONG = "dropped:policy-string-too-long"


def rewrite_rows(conn: sqlite3.Connection) -> None:
    """Rewrite every day's policy and failure rows in canonical form (idempotent), inside the
    transaction the caller holds."""
    days = [
        day
        for (day,) in conn.execute(
            "SELECT day FROM policy_count UNION SELECT day FROM failure_count ORDER BY day"
        )
    ]
    for day in days:
        _rewrite_day(conn, day)


def _rewrite_day(conn: sqlite3.Connection, day: str) -> None:
    agg = Aggregate()
    for line, first_seen, last_seen in stored_lines(conn, day, ordered=False):
        fixed = canon.export_line(line)
        if fixed is None:
            summary = line["summary"]
            sessions = (
                summary["total-successful-session-count"] + summary["total-failure-session-count"]
            )
            if sessions:
                agg.count(day, DROPPED_TOO_LONG, sessions)
            continue
        _fold(agg, fixed, first_seen, last_seen)
    conn.execute("DELETE FROM failure_count WHERE day = ?", (day,))
    conn.execute("DELETE FROM policy_count WHERE day = ?", (day,))
    execute_batch(conn, build_batch(agg))


def _fold(agg: Aggregate, line: dict[str, Any], first_seen: float, last_seen: float) -> None:
    """Add one canonical line to ``agg``, merging it with an equal one already there."""
    policy = line["policy"]
    key: PolicyKey = (
        line["day"],
        line["domain"],
        line["record"],
        Policy(
            policy_type=policy["policy-type"],
            policy_domain=policy["policy-domain"],
            policy_string=tuple(policy.get("policy-string", ())),
            mx_host=tuple(policy.get("mx-host", ())),
        ),
    )
    counts = agg.policies.get(key)
    if counts is None:
        counts = agg.policies[key] = PolicyCounts(first_seen=first_seen, last_seen=last_seen)
    else:
        counts.first_seen = min(counts.first_seen, first_seen)
        counts.last_seen = max(counts.last_seen, last_seen)
    counts.successful += line["summary"]["total-successful-session-count"]
    counts.failed += line["summary"]["total-failure-session-count"]
    for entry in line["failure-details"]:
        detail = FailureDetail(entry["result-type"], *(entry.get(f) for f in DETAIL_FIELDS))
        dkey = (key, detail)
        agg.details[dkey] = agg.details.get(dkey, 0) + entry["failed-session-count"]

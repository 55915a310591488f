"""contrib/grafana/tlsrpt-reporter.json and docs/operating.md's metric tables against what the
two halves really export: a real collector writing its metrics file, and ``status --format
prometheus`` on a real state database with delivered, retrying and given-up reports. Both are
read with ``prometheus_client``'s own parser.

A query naming a metric nobody exports draws an empty panel without any error in Grafana;
these tests are the only place such a typo shows up.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rigs.httpsserver import Reply
from support.collector import Collector, send_all
from support.datagrams import ok
from support.paths import ROOT
from support.site import Site

DASHBOARD = ROOT / "contrib" / "grafana" / "tlsrpt-reporter.json"
OPERATING = ROOT / "docs" / "operating.md"

# --- a small PromQL tokenizer ----------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")  # label matchers, once strings are gone
_RANGE = re.compile(r"\[[^\[\]]*\]")  # ranges and subquery steps: 5m, $__rate_interval
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_OFFSET = re.compile(r"\boffset\s+-?\w+")
_NUMBER = re.compile(r"(?<![\w:.])(?:0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
# An identifier not part of a $variable, and whether a "(" follows (then: a function).
_IDENTIFIER = re.compile(r"(?<![\w:$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
             "or", "unless", "offset", "inf", "nan"}  # fmt: skip
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions,
    keywords, label names (inside braces or grouping clauses), durations or variables."""
    rest = _STRING.sub('""', expr)
    rest = _MATCHERS.sub(" ", rest)
    rest = _RANGE.sub(" ", rest)
    rest = _GROUPING.sub(" ", rest)
    rest = _OFFSET.sub(" ", rest)
    rest = _NUMBER.sub(" ", rest)
    return {
        m.group(1)
        for m in _IDENTIFIER.finditer(rest)
        if m.group(2) is None and m.group(1).lower() not in _KEYWORDS
    }


def equality_matchers(expr: str) -> list[tuple[str, str, str]]:
    """(metric, label, value) of every ``metric{label="value"}`` matcher in ``expr``."""
    return [
        (metric, label, value)
        for metric, inside in _SELECTOR.findall(expr)
        for label, op, value in _MATCHER.findall(inside)
        if op == "="
    ]


def grouping_labels(expr: str) -> set[str]:
    """The labels of every ``by (...)``, ``on (...)`` and like clause."""
    return {
        label.strip()
        for _, labels in _GROUPING.findall(_STRING.sub('""', expr))
        for label in labels.split(",")
        if label.strip()
    }


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (reason) (rate(a_total{instance=~"$c",reason="x"}[$__rate_interval])) > 0',
         {"a_total"}),
        ("histogram_quantile(0.95, sum by (le, instance) (rate(h_bucket[5m])))", {"h_bucket"}),
        ("time() - max(t_seconds > 0) * 1000", {"t_seconds"}),
        ("a / on(instance) group_left sum without (kind) (b offset 1h) or c unless d",
         {"a", "b", "c", "d"}),
        ('x{name="sum(y)"} / scalar(clamp_min(sum(z{q=~"{a}"}), 1e-3))', {"x", "z"}),
    ],
)  # fmt: skip
def test_the_tokenizer_finds_exactly_the_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_the_tokenizer_finds_matchers_and_grouping_labels() -> None:
    expr = 'sum by (kind, state) (e{state="given-up",instance=~"$r"}) / on(instance) f'
    assert equality_matchers(expr) == [("e", "state", "given-up")]
    assert grouping_labels(expr) == {"kind", "state", "instance"}


# --- what is exported ------------------------------------------------------------------------


@dataclass
class Exported:
    """What both halves export: each sample name with the label sets written under it, and
    the family names (a counter's without ``_total``, a histogram's without ``_bucket``)."""

    samples: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    families: set[str] = field(default_factory=set)

    def read(self, text: str) -> None:
        for family in text_string_to_metric_families(text):
            self.families.add(family.name)
            for sample in family.samples:
                self.samples.setdefault(sample.name, []).append(sample.labels)

    def names(self) -> set[str]:
        return set(self.samples) | self.families


def _collector_text(make_collector: Callable[..., Collector], shared_dir: Path) -> str:
    prom = shared_dir / "collectd.prom"
    c = make_collector(metrics_file=prom).start()
    send_all(c.socket, [ok(f"d{i}.example") for i in range(20)] + [b"not json"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = prom.read_text() if prom.exists() else ""
        plain = {s.name: s.value for family in text_string_to_metric_families(text)
                 for s in family.samples if not s.labels}  # fmt: skip
        if (
            plain.get("tlsrpt_collectd_accepted_total") == 20
            and plain.get("tlsrpt_collectd_datagrams_waiting") == 0
        ):
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"the metrics file never showed the datagrams:\n{c.log()}")
    assert c.stop() == 0
    return prom.read_text()


def _reporter_text(site: Site) -> str:
    site.web.script(Reply(500))  # web.example: retrying; evil.example: given up; mail: sent
    sent = site.cli("send", "--now")
    assert sent.returncode == 0, sent.stderr
    shown = site.cli("status", "--format", "prometheus")
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


@pytest.fixture
def exported(make_collector: Callable[..., Collector], shared_dir: Path, site: Site) -> Exported:
    """Both halves' metrics, from real runs."""
    out = Exported()
    out.read(_collector_text(make_collector, shared_dir))
    out.read(_reporter_text(site))
    # Proof that both halves were really read, with the data the queries need.
    assert {"tlsrpt_collectd_accepted_total", "tlsrpt_reporter_days_built"} <= out.names()
    assert {"state": "sent"} in out.samples["tlsrpt_reporter_deliveries"]
    assert {"state": "failed-retrying"} in out.samples["tlsrpt_reporter_deliveries"]
    return out


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
        found += [(panel["title"], target["expr"]) for target in panel["targets"]]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            inner = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["definition"])
            assert inner, variable["definition"]
            found.append((f"${variable['name']}", inner.group(1)))
    return found


def test_every_dashboard_query_names_only_exported_metrics_labels_and_label_values(
    exported: Exported,
) -> None:
    queries = _queries(json.loads(DASHBOARD.read_text()))
    assert len(queries) >= 20
    used: set[str] = set()
    for where, expr in queries:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        assert names <= set(exported.samples), f"{where}: {names - set(exported.samples)}"
        used |= names
        for metric, label, value in equality_matchers(expr):
            assert any(ls.get(label) == value for ls in exported.samples[metric]), (
                f"{where}: {metric} has no series with {label}={value!r}"
            )
        known = {"instance", "job"} | {k for n in names for ls in exported.samples[n] for k in ls}
        assert grouping_labels(expr) <= known, f"{where}: {grouping_labels(expr) - known}"
    # The panels the dashboard is for (docs/operating.md, Metrics).
    for wanted in (
        "tlsrpt_reporter_day_result_type_failed_sessions",
        "tlsrpt_reporter_day_sessions",
        "tlsrpt_collectd_accepted_total",
        "tlsrpt_collectd_rejected_total",
        "tlsrpt_collectd_dropped_total",
        "tlsrpt_collectd_held_bytes",
        "tlsrpt_reporter_reports",
        "tlsrpt_reporter_deliveries",
        "tlsrpt_reporter_last_successful_send_timestamp_seconds",
        "tlsrpt_reporter_suppressed_destinations",
    ):
        assert wanted in used, wanted


def test_every_documented_metric_is_exported_and_every_exported_one_documented(
    exported: Exported,
) -> None:
    text = OPERATING.read_text()
    section = text[text.index("\n## Metrics") :]
    section = section[: section.index("\n## ", 1)]
    documented = {
        re.sub(r"\{.*", "", name)
        for name in re.findall(r"^\| `(tlsrpt_(?:reporter|collectd)_[^`]+)` \|", section, re.M)
    }
    assert documented, "no metric table found"
    assert documented <= exported.names(), sorted(documented - exported.names())
    undocumented = {
        f for f in exported.families if f not in documented and f + "_total" not in documented
    }
    assert not undocumented, sorted(undocumented)

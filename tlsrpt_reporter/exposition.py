"""Prometheus text exposition (format 0.0.4) through the maintained ``prometheus_client``.

``tlsrpt-reporter status --format prometheus`` and the collector's ``metrics_file`` both build
metric families (``prometheus_client.core``'s ``*MetricFamily``) from numbers they already hold
and render them here. The library owns the format: escaping, the ``_total`` names of counters,
the spelling of values. This module adds what both callers need and the library leaves to
them: a private registry (never the library's global ``REGISTRY``, which would add this
process's own CPU and memory metrics) and histogram buckets from per-bucket counts.

No files and no clocks: the caller writes the text, through ``safefile.replace`` (the
library's ``write_to_textfile`` writes under a predictable temporary name, which someone could
plant a link at: docs/security.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

# A family with labels, filled by by_label and handed back as the same type.
_Labelled = TypeVar("_Labelled", GaugeMetricFamily, CounterMetricFamily)


class _Fixed(Collector):
    """A collector of families computed beforehand (``status``: one rendering per run)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        """The families given, in their order."""
        return iter(self._families)


def registry(collector: Collector) -> CollectorRegistry:
    """A registry of its own holding only ``collector``."""
    own = CollectorRegistry(auto_describe=False)
    own.register(collector)
    return own


def text(source: CollectorRegistry) -> str:
    """The exposition text of everything ``source`` collects now (``""`` when nothing)."""
    return generate_latest(source).decode("utf-8")


def render(families: Iterable[Metric]) -> str:
    """The exposition text of ``families``, in the order given."""
    return text(registry(_Fixed(families)))


def gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    """A family of one unlabelled gauge sample."""
    return GaugeMetricFamily(name, help_text, value=value)


def by_label(family: _Labelled, values: Iterable[tuple[str, float]]) -> _Labelled:
    """``family`` (created with one label name) with a sample per (label value, value)."""
    for label, value in values:
        family.add_metric([label], value)
    return family


def histogram(
    name: str, help_text: str, bounds: Sequence[float], counts: Sequence[int], total: float
) -> HistogramMetricFamily:
    """The histogram whose ``counts[i]`` observations fell at or below ``bounds[i]`` and above
    ``bounds[i - 1]`` (``counts`` has one more entry: above the last bound), ``total`` their
    sum. The format's buckets are cumulative and end with ``le="+Inf"``."""
    if len(counts) != len(bounds) + 1:
        raise ValueError("a histogram needs one count per bound plus one above the last")
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip((*bounds, math.inf), counts, strict=True):
        running += count
        buckets.append((_le(bound), running))
    return HistogramMetricFamily(name, help_text, buckets=buckets, sum_value=total)


def _le(bound: float) -> str:
    # Spelled as Go's client and Prometheus itself write bounds ("1", "0.25", "+Inf"), not
    # Python's "1.0": an le label value is matched as a string by `{le="1"}` in a query.
    if math.isinf(bound):
        return "+Inf"
    return str(int(bound)) if float(bound).is_integer() else repr(float(bound))

"""The Prometheus text exposition format, version 0.0.4: metric families in, text out.

Pure code shared by ``tlsrpt-reporter status --format prometheus`` and the collector's
``metrics_file``; it owns the format's escaping and layout rules and nothing else (no files,
no clocks). Both outputs are meant for node-exporter's textfile collector, which reads this
format from ``*.prom`` files.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

CONTENT_TYPE = "text/plain; version=0.0.4"

Kind = Literal["counter", "gauge", "histogram", "summary", "untyped"]
Labels = tuple[tuple[str, str], ...]

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# The sample-name suffixes each type may use: a histogram's series are name_bucket, name_sum
# and name_count; every other type here writes its samples under the family's own name.
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}


@dataclass(frozen=True)
class Sample:
    """One line: ``<family name><suffix>{labels} value``."""

    value: float
    labels: Labels = ()
    suffix: str = ""


@dataclass(frozen=True)
class Family:
    """A metric family: one ``# HELP`` and one ``# TYPE`` line, then its samples."""

    name: str
    kind: Kind
    help: str
    samples: tuple[Sample, ...]


def gauge(name: str, help_text: str, value: float) -> Family:
    """A family of one unlabelled gauge sample."""
    return Family(name, "gauge", help_text, (Sample(value),))


def histogram_samples(
    bounds: Sequence[float], counts: Sequence[int], total: float, labels: Labels = ()
) -> tuple[Sample, ...]:
    """The samples of a histogram whose ``counts[i]`` observations fell at or below
    ``bounds[i]`` and above ``bounds[i - 1]`` (``counts`` has one more entry: above the last
    bound). Buckets in the format are cumulative, with a final ``le="+Inf"``.
    """
    if len(counts) != len(bounds) + 1:
        raise ValueError("a histogram needs one count per bound plus one above the last")
    samples = []
    running = 0
    for bound, count in zip((*bounds, math.inf), counts, strict=True):
        running += count
        le = (("le", format_value(bound)),)
        samples.append(Sample(running, labels + le, "_bucket"))
    samples.append(Sample(total, labels, "_sum"))
    samples.append(Sample(running, labels, "_count"))
    return tuple(samples)


def render(families: Iterable[Family]) -> str:
    """The exposition text of ``families``, in the order given; ends with a newline.

    Raises ValueError for a name the format does not allow (a programming error, never data).
    """
    lines: list[str] = []
    seen: set[str] = set()
    for family in families:
        if not _METRIC_NAME.fullmatch(family.name):
            raise ValueError(f"{family.name!r} is not a valid metric name")
        if family.name in seen:
            raise ValueError(f"metric family {family.name} is given twice")
        seen.add(family.name)
        lines.append(f"# HELP {family.name} {escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        allowed = _SUFFIXES.get(family.kind, ("",))
        for sample in family.samples:
            if sample.suffix not in allowed:
                raise ValueError(f"{family.kind} {family.name} has no {sample.suffix!r} series")
            lines.append(f"{family.name}{sample.suffix}{_labels(sample.labels)} "
                         f"{format_value(sample.value)}")  # fmt: skip
    return "\n".join(lines) + "\n" if lines else ""


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    parts = []
    for name, value in labels:
        if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
            raise ValueError(f"{name!r} is not a valid label name")
        parts.append(f'{name}="{escape_label_value(value)}"')
    return "{" + ",".join(parts) + "}"


def escape_label_value(value: str) -> str:
    """A label value as the format writes it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text as the format writes it: backslash and newline escaped (quotes stay)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value: integers without a fraction, Go-style ``+Inf``, ``-Inf``, ``NaN``."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)

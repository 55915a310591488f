"""The summary page's charts as inline SVG: no script, no font or image to fetch, so the page
shows the same offline, from a file, under a Content-Security-Policy that allows nothing else.

Pure string building. Every text that comes from data is escaped here (:func:`html.escape`);
numbers are formatted by this module. Each mark carries a ``<title>`` (the browser shows it on
hover) and ``data-`` attributes with the raw numbers, which the tests read back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from tlsrpt_reporter.summary.model import DayRow, ResultTypeRow, percent

_W, _H = 760, 230
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 12, 16, 40
OK_COLOUR, FAIL_COLOUR, LINE_COLOUR = "#4c956c", "#d1495b", "#2f6690"


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``value`` (1 for 0): the
    top of an axis whose ticks read well."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 5.0, 10.0):
        if value <= step * power:
            return step * power
    return 10.0 * power


def _svg(label: str, body: list[str], height: int = _H) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {height}" '
        f'role="img" aria-label="{escape(label)}" class="chart">'
        f"<title>{escape(label)}</title>{''.join(body)}</svg>"
    )


def _axis(top: float, fmt: str) -> list[str]:
    """Horizontal grid lines and labels at 0, half and the top of the y axis."""
    out = []
    plot_h = _H - _TOP - _BOTTOM
    for share in (0.0, 0.5, 1.0):
        y = _TOP + plot_h * (1 - share)
        value = top * share
        text = percent(value) if fmt == "percent" else f"{value:,.0f}"
        out.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_W - _RIGHT}" y2="{y:.1f}" '
                   'class="grid"/>')  # fmt: skip
        out.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{text}</text>')
    return out


def _day_labels(days: Sequence[DayRow], slot: float) -> list[str]:
    """A label under every few days (month-day), at most about ten."""
    every = max(1, math.ceil(len(days) / 10))
    out = []
    for i, row in enumerate(days):
        if i % every == 0 or i == len(days) - 1:
            x = _LEFT + slot * (i + 0.5)
            out.append(f'<text x="{x:.1f}" y="{_H - _BOTTOM + 16}" text-anchor="middle">'
                       f"{escape(row.day[5:])}</text>")  # fmt: skip
    return out


def daily_sessions(days: Sequence[DayRow]) -> str:
    """Sessions per day as stacked bars: successful below, failed on top."""
    top = nice_ceiling(max((row.sessions for row in days), default=0))
    plot_h, plot_w = _H - _TOP - _BOTTOM, _W - _LEFT - _RIGHT
    slot = plot_w / max(1, len(days))
    body = _axis(top, "count")
    for i, row in enumerate(days):
        x = _LEFT + slot * i + slot * 0.15
        width = slot * 0.7
        ok_h = plot_h * (row.sessions - row.failures) / top
        fail_h = plot_h * row.failures / top
        base = _TOP + plot_h
        tip = escape(f"{row.day}: {row.sessions:,} sessions, {row.failures:,} failed "
                     f"({percent(row.failure_rate)})")  # fmt: skip
        body.append(
            f'<g class="day" data-day="{escape(row.day)}" data-sessions="{row.sessions}" '
            f'data-failures="{row.failures}"><title>{tip}</title>'
            f'<rect x="{x:.1f}" y="{base - ok_h:.1f}" width="{width:.1f}" height="{ok_h:.1f}" '
            f'fill="{OK_COLOUR}"/>'
            f'<rect x="{x:.1f}" y="{base - ok_h - fail_h:.1f}" width="{width:.1f}" '
            f'height="{fail_h:.1f}" fill="{FAIL_COLOUR}"/></g>'
        )
    body += _day_labels(days, slot)
    body.append(_legend([("successful", OK_COLOUR), ("failed", FAIL_COLOUR)]))
    return _svg("Sessions per day, successful and failed", body)


def daily_failure_rate(days: Sequence[DayRow]) -> str:
    """The failure rate of each day with sessions, as a line with a point per day."""
    top = nice_ceiling(max((row.failure_rate for row in days if row.sessions), default=0.0))
    top = min(top, 1.0)
    plot_h, plot_w = _H - _TOP - _BOTTOM, _W - _LEFT - _RIGHT
    slot = plot_w / max(1, len(days))
    points, marks = [], []
    for i, row in enumerate(days):
        if not row.sessions:
            continue
        x = _LEFT + slot * (i + 0.5)
        y = _TOP + plot_h * (1 - row.failure_rate / top)
        points.append(f"{x:.1f},{y:.1f}")
        running = "" if row.finished else " (so far: the day is still running)"
        tip = escape(f"{row.day}: {percent(row.failure_rate)} of {row.sessions:,} sessions "
                     f"failed{running}")  # fmt: skip
        # The running day hollow: a part of a day is no match for whole ones.
        fill = LINE_COLOUR if row.finished else "none"
        marks.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{fill}" stroke="{LINE_COLOUR}" '
            f'class="rate" '
            f'data-day="{escape(row.day)}" data-rate="{row.failure_rate:.6f}">'
            f"<title>{tip}</title></circle>"
        )
    body = _axis(top, "percent")
    if len(points) > 1:
        body.append(f'<polyline points="{" ".join(points)}" fill="none" '
                    f'stroke="{LINE_COLOUR}" stroke-width="2"/>')  # fmt: skip
    body += marks + _day_labels(days, slot)
    return _svg("Failure rate per day", body)


def result_type_bars(rows: Sequence[ResultTypeRow]) -> str:
    """Failed sessions per result type, as horizontal bars, most first."""
    bar, gap, label_w = 20, 8, 210
    height = _TOP + len(rows) * (bar + gap) + 8
    top = max((row.failures for row in rows), default=1) or 1
    plot_w = _W - label_w - _RIGHT - 70
    body = []
    for i, row in enumerate(rows):
        y = _TOP + i * (bar + gap)
        width = plot_w * row.failures / top
        name = escape(row.result_type)
        body.append(
            f'<g class="result-type" data-result-type="{name}" data-failures="{row.failures}">'
            f"<title>{name}: {row.failures:,} failed sessions, {row.domains:,} domains</title>"
            f'<text x="{label_w - 8}" y="{y + bar - 6}" text-anchor="end">{name}</text>'
            f'<rect x="{label_w}" y="{y}" width="{width:.1f}" height="{bar}" '
            f'fill="{FAIL_COLOUR}"/>'
            f'<text x="{label_w + width + 6:.1f}" y="{y + bar - 6}">{row.failures:,}</text></g>'
        )
    return _svg("Failed sessions by result type", body, height)


def _legend(entries: list[tuple[str, str]]) -> str:
    out, x = [], _LEFT
    for label, colour in entries:
        out.append(f'<rect x="{x}" y="{_H - 14}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{x + 14}" y="{_H - 5}">{escape(label)}</text>')  # fmt: skip
        x += 110
    return "".join(out)

"""Values that come from data (domains, destinations, error texts, result types from other hosts'
exports) cannot inject markup into the page or drive the terminal; the page forbids scripts and
fetches by its Content-Security-Policy and is replaced whole."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from tlsrpt_reporter.errors import TlsRptError
from tlsrpt_reporter.store.summary_queries import DestinationCounts, Due
from tlsrpt_reporter.summary import compute, page, text
from tlsrpt_reporter.summary.model import Summary, fold_day

EVIL_DOMAIN = '<img src=x onerror="alert(1)">.example'
EVIL_DEST = 'https://x.example/"><script>alert(2)</script>'
EVIL_ERROR = "</td><script>alert(3)</script>\x1b[31m[bold]red[/bold]"
EVIL_TYPE = "<svg onload=alert(4)>"


def _hostile() -> Summary:
    line = {
        "domain": EVIL_DOMAIN,
        "summary": {"total-successful-session-count": 1, "total-failure-session-count": 2},
        "failure-details": [{"result-type": EVIL_TYPE, "failed-session-count": 2}],
    }
    earlier = fold_day(
        "2026-05-09",
        [
            line
            | {"summary": {"total-successful-session-count": 1, "total-failure-session-count": 0}}
        ],
    )
    facts = compute.StateFacts(
        built={"2026-05-10": 1},
        statuses={"2026-05-10": {"sending": 1}},
        retrying={"2026-05-10": 1},
        destinations=[DestinationCounts(EVIL_DEST, 1, 0, 1, 0, 0, EVIL_ERROR)],
        due=Due(None, 0, 1.0e9, 1),
    )  # fmt: skip
    window = compute.Window.ending("2026-05-11", 30)
    return compute.summarize([earlier, fold_day("2026-05-10", [line])], facts, window,
                             now=1.7786e9, grace=0.0, spread=0.0, top=50,
                             failed_sources=["cmd:x: <b>bad</b>"])  # fmt: skip


def test_the_page_escapes_every_value_from_data() -> None:
    html = page.render(_hostile())
    assert "<script" not in html and "<img" not in html and "<svg onload" not in html
    assert "<b>bad" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;.example" in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html
    assert "&lt;/td&gt;&lt;script&gt;alert(3)" in html
    assert "\x1b" not in html


def test_the_page_forbids_scripts_and_fetches() -> None:
    html = page.render(_hostile())
    csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    assert f'<meta http-equiv="Content-Security-Policy" content="{csp}">' in html
    assert html.index("Content-Security-Policy") < html.index("<body>")
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")


def test_the_terminal_shows_data_as_itself_without_escape_sequences() -> None:
    out = io.StringIO()
    text.render(_hostile(), out)
    shown = out.getvalue()
    assert "\x1b" not in shown  # not a terminal: rich adds none, and the data's is replaced
    assert "?[31m[bold]red[/bold]" in shown.replace("\n", "")  # markup printed, not applied
    assert EVIL_DOMAIN in shown


def test_the_page_is_replaced_whole_and_readable_by_a_web_server(tmp_path: Path) -> None:
    target = tmp_path / "new" / "dir"
    written = page.write(target, _hostile())
    assert written == target / "index.html"
    first = written.stat().st_ino
    page.write(target, _hostile())
    assert written.stat().st_ino != first  # a new file renamed over the old one
    assert written.stat().st_mode & 0o777 == 0o644
    assert os.listdir(target) == ["index.html"]  # no temporary file left behind


def test_a_page_that_cannot_be_written_is_one_error_naming_the_path(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(TlsRptError, match=r"cannot write .*file/sub/index\.html") as caught:
        page.write(tmp_path / "file" / "sub", _hostile())
    assert "\n" not in str(caught.value)

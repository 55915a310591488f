"""A week of sessions on a reporter site, sent for real once per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from summary_site import Week, week_site


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Week]:
    """:func:`summary_site.week_site` after one ``send --now`` (which writes the page)."""
    tmp = tmp_path_factory.mktemp("week")
    page_dir = tmp / "published"
    for site in week_site(tmp, page_dir):
        yield Week(site, page_dir, site.cli("send", "--now"))

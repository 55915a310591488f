"""The summary page in a real browser: Debian's Chromium, headless, driven by selenium through
/usr/bin/chromedriver (SE_OFFLINE: selenium must not download a driver). The numbers read from
the rendered page agree with the databases, the page asks for nothing from the network (the
browser's console holds no blocked request or error), and a screenshot is kept.

Set TLSRPT_DOCS_SCREENSHOT=1 to also copy the screenshot to docs/summary.png.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from summary_site import Truth, Week, day, truth
from support.paths import ROOT

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Generous: the machine is shared and small; a cold Chromium start can take long under load.
TIMEOUT = 180


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """Headless Chromium with a fresh profile and no background network use."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", "--window-size=1280,1000",
                f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(arg)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium refuses to run its sandbox as root
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    old = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"
    try:
        service = Service(CHROMEDRIVER, log_output=str(profile / "chromedriver.log"))
        driver = webdriver.Chrome(options=options, service=service)
    finally:
        if old is None:
            os.environ.pop("SE_OFFLINE", None)
        else:
            os.environ["SE_OFFLINE"] = old
    driver.set_page_load_timeout(TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def page(week: Week, browser: webdriver.Chrome) -> tuple[webdriver.Chrome, Truth]:
    """The page ``send`` wrote, open in the browser, and the databases' numbers for it."""
    assert week.send.returncode == 0, week.send.stderr
    browser.get((week.page_dir / "index.html").as_uri())
    window = browser.find_element(By.ID, "window")
    first, last = window.get_attribute("data-first"), window.get_attribute("data-last")
    assert first and last
    return browser, truth(week.site, first, last)


def _int(cell: WebElement) -> int:
    """A number as the page shows it (with thousands separators)."""
    return int(cell.text.replace(",", ""))


def _field(row: WebElement, name: str) -> int:
    return _int(row.find_element(By.CSS_SELECTOR, f'td[data-field="{name}"]'))


def test_the_overview_shows_the_window_totals(page: tuple[webdriver.Chrome, Truth]) -> None:
    driver, t = page
    assert _int(driver.find_element(By.ID, "sessions")) == sum(s for s, _ in t.per_day.values())
    assert _int(driver.find_element(By.ID, "failures")) == sum(f for _, f in t.per_day.values())
    failing = sum(1 for _, f in t.per_domain.values() if f)
    assert _int(driver.find_element(By.ID, "failing-domains")) == failing
    delivered = driver.find_element(By.ID, "reports-delivered")
    assert _int(delivered) == t.report_statuses["delivered"]
    assert "Next report:" in driver.find_element(By.ID, "next-report").text


def test_each_day_row_and_bar_matches_the_collector(page: tuple[webdriver.Chrome, Truth]) -> None:
    driver, t = page
    rows = driver.find_elements(By.CSS_SELECTOR, "#day-table tr.day")
    shown = {r.get_attribute("data-day"): (_field(r, "sessions"), _field(r, "failures"))
             for r in rows}  # fmt: skip
    assert shown == t.per_day
    bars = driver.find_elements(By.CSS_SELECTOR, "svg.chart g.day")
    assert len(bars) == 30
    for bar in bars:
        sessions, failures = t.per_day.get(bar.get_attribute("data-day") or "", (0, 0))
        assert int(bar.get_attribute("data-sessions") or -1) == sessions
        assert int(bar.get_attribute("data-failures") or -1) == failures
    # Drawn, not just present: the bars of the busiest day have a height on screen.
    busiest = max(t.per_day, key=lambda d: t.per_day[d][0])
    bar = driver.find_element(By.CSS_SELECTOR, f'svg.chart g.day[data-day="{busiest}"] rect')
    assert bar.size["height"] > 10


def test_each_domain_row_matches_the_collector(page: tuple[webdriver.Chrome, Truth]) -> None:
    driver, t = page
    rows = driver.find_elements(By.CSS_SELECTOR, "#domain-table tr.domain")
    shown = {r.find_element(By.CSS_SELECTOR, "td.name").text:
             (_field(r, "sessions"), _field(r, "failures")) for r in rows}  # fmt: skip
    assert shown == t.per_domain
    first = rows[0].find_element(By.CSS_SELECTOR, "td.name").text
    assert t.per_domain[first][1] == max(f for _, f in t.per_domain.values())


def test_result_types_show_counts_and_causes(page: tuple[webdriver.Chrome, Truth]) -> None:
    from tlsrpt_reporter.report.result_types import ADVICE

    driver, t = page
    rows = driver.find_elements(By.CSS_SELECTOR, "#result-type-table tr.result-type")
    assert {r.get_attribute("data-result-type"): _field(r, "failures") for r in rows} == (
        t.result_types
    )
    for row in rows:
        cause = row.find_element(By.CSS_SELECTOR, "td.cause").text
        assert ADVICE[row.get_attribute("data-result-type") or ""].cause in cause


def test_changes_and_deliveries_are_shown(page: tuple[webdriver.Chrome, Truth]) -> None:
    driver, t = page
    newly = driver.find_elements(By.CSS_SELECTOR, "#newly-failing tr.change td.name")
    assert [c.text for c in newly] == ["web.example", "new.example"]
    recovered = driver.find_elements(By.CSS_SELECTOR, "#recovered tr.change td.name")
    assert [c.text for c in recovered] == ["mail.example"]
    assert day(1) in driver.find_element(By.ID, "changes").text
    rows = driver.find_elements(By.CSS_SELECTOR, "#destination-table tr.destination")
    assert len(rows) == len(t.destinations)
    for row in rows:
        states = t.destinations[row.find_element(By.CSS_SELECTOR, "td.name").text]
        assert _field(row, "reports") == sum(states.values())
        assert _field(row, "delivered") == states.get("sent", 0)
        assert _field(row, "retrying") == states.get("failed-retrying", 0)
        assert _field(row, "given-up") == states.get("given-up", 0)
    built = driver.find_element(By.CSS_SELECTOR, '#report-totals td[data-field="built"]')
    assert _int(built) == sum(t.report_statuses.values())


def test_the_page_loads_nothing_and_logs_no_error(page: tuple[webdriver.Chrome, Truth]) -> None:
    driver, _ = page
    # A blocked fetch (CSP) or a failed resource load would be a SEVERE console entry.
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    assert driver.find_elements(By.TAG_NAME, "script") == []


def test_a_screenshot_is_kept(page: tuple[webdriver.Chrome, Truth], tmp_path: Path) -> None:
    driver, _ = page
    height = driver.find_element(By.TAG_NAME, "body").rect["height"]
    driver.set_window_size(1280, int(height) + 120)
    shot = tmp_path / "summary.png"
    assert driver.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("TLSRPT_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(shot, ROOT / "docs" / "summary.png")

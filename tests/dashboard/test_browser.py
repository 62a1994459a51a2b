"""The real page in a real browser: ``streamlit run`` + Debian's headless chromium + the real broker.

Checks that the numbers a person reads are right, that a symbol full of HTML
stays text, and that a broker that is down gives a banner, not a stack trace.
The screenshot of the live page goes to ``$DASHBOARD_SCREENSHOT`` (default:
test-artifacts/dashboard.png); ``make screenshot`` refreshes docs/dashboard.png for the README.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from connectors.broker import free_port, stop_process

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = Path(os.environ.get("DASHBOARD_SCREENSHOT", REPO / "test-artifacts" / "dashboard.png"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
HOSTILE_SYMBOL = '<img id="injected" src="x">'

pytestmark = [
    pytest.mark.broker, pytest.mark.browser, pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium (make browser)"),
]
sync_playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").sync_playwright


@contextmanager
def streamlit_page(brokers: str, anomaly_topic: str, summary_topic: str) -> Iterator[str]:
    """``streamlit run dashboard/app.py`` on a free port; yields its URL once it is healthy."""
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith(("KAFKA_", "DASHBOARD_"))}
    env.update({"KAFKA_BROKERS": brokers, "ANOMALY_TOPIC": anomaly_topic, "SUMMARY_TOPIC": summary_topic,
                "DASHBOARD_REFRESH_SECONDS": "1"})
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stdout.read().decode(errors="replace")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as answer:
                    if answer.read() == b"ok":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "streamlit did not become healthy within 30 s"
            time.sleep(0.2)
        yield url
    finally:
        stop_process(process, timeout=10)


@contextmanager
def browser_page(url: str):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(url, wait_until="domcontentloaded")
            yield page
        finally:
            browser.close()


def page_metrics(page) -> dict[str, str]:
    metrics = {}
    for metric in page.locator('[data-testid="stMetric"]').all():
        label = metric.locator('[data-testid="stMetricLabel"]').inner_text().strip()
        metrics[label] = metric.locator('[data-testid="stMetricValue"]').inner_text().strip()
    return metrics


def wait_for_metrics(page, expected: dict[str, str], timeout_s: float = 30) -> None:
    """Until the page shows exactly ``expected``: the page redraws as data arrives, so a
    reading taken mid-refresh may be partial; only a reading that never comes right fails."""
    deadline = time.monotonic() + timeout_s
    while True:
        shown = page_metrics(page)
        if shown == expected:
            return
        assert time.monotonic() < deadline, f"the page never showed {expected}; it shows {shown}"
        page.wait_for_timeout(250)


def test_the_live_page_shows_the_right_numbers(
    broker, published_topics, recorded_anomalies, page_expectations, publisher
):
    anomaly_topic, summary_topic = published_topics
    hostile = dict(recorded_anomalies[-1], symbol=HOSTILE_SYMBOL, anomaly_id="hostile-1")
    with streamlit_page(broker, anomaly_topic, summary_topic) as url, browser_page(url) as page:
        wait_for_metrics(page, page_expectations(recorded_anomalies))
        page.locator(".js-plotly-plot").nth(3).wait_for(state="visible", timeout=15_000)
        assert page.locator(".js-plotly-plot").count() == 4
        assert page.locator('[data-testid="stException"]').count() == 0
        # Streamlit scrolls inside its own container, so a tall window is what captures the whole page.
        page.set_viewport_size({"width": 1600, "height": 2000})
        page.wait_for_timeout(2000)  # a couple of refreshes, so the picture shows the settled page
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))

        # Refreshes update the charts in place: the same DOM nodes survive several of them.
        chart = page.locator(".js-plotly-plot").first.element_handle()
        updated = page.get_by_text("Updated ", exact=False).first.inner_text()
        page.wait_for_timeout(3000)
        assert page.get_by_text("Updated ", exact=False).first.inner_text() != updated, "the page did not refresh"
        assert chart.evaluate("node => node.isConnected"), "a refresh rebuilt the chart instead of updating it"

        # A symbol filter chosen in the page holds while new anomalies (and a new symbol) arrive.
        syn1 = [record for record in recorded_anomalies if record["symbol"] == "SYN1"]
        page.locator('[data-testid="stMultiSelect"]').first.click()
        page.keyboard.type("SYN1")
        page.keyboard.press("Enter")
        page.keyboard.press("Escape")
        wait_for_metrics(page, page_expectations(syn1))
        live = dict(syn1[-1], anomaly_id="SYN1-live-1", side="N", severity=0.99, level="critical")
        publisher(anomaly_topic, [orjson.dumps(hostile), orjson.dumps(live), orjson.dumps(recorded_anomalies[0])])
        expected = page_expectations([*syn1, live])
        assert expected["Critical"] == "1" and expected["Max severity"] == "0.990"
        wait_for_metrics(page, expected)

        # A new page (new session) reads everything back from the topic, unfiltered.
        page.reload()
        wait_for_metrics(page, page_expectations([*recorded_anomalies, hostile, live]))
        page.get_by_text(HOSTILE_SYMBOL, exact=True).first.wait_for(timeout=15_000)  # shown as text...
        assert page.locator("#injected").count() == 0, "a symbol was rendered as HTML"  # ...never as HTML
        assert page.locator('[data-testid="stException"]').count() == 0
    assert SCREENSHOT.stat().st_size > 50_000


def test_broker_down_gives_a_banner_not_a_stack_trace():
    nobody = f"127.0.0.1:{free_port()}"
    with streamlit_page(nobody, "anomalies", "instrument-summaries") as url, browser_page(url) as page:
        banner = page.locator('[data-testid="stAlert"]').filter(has_text="Kafka broker unreachable")
        banner.wait_for(state="visible", timeout=30_000)
        assert nobody in banner.inner_text()
        page.get_by_role("button", name="Retry now").wait_for(state="visible", timeout=10_000)  # drawn just after the banner
        assert page.locator('[data-testid="stException"]').count() == 0
        assert "Traceback" not in page.content()

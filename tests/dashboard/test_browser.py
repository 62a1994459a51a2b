"""The real page in a real browser: ``streamlit run`` + Debian's headless chromium + the real broker.

An analyst's session: the totals and every instrument's true anomaly count with
more anomalies published than the page keeps; opening an incident; recording a
review, reloading, and seeing it; the page refreshing in place without greying;
hostile text staying text; the project's Streamlit config (no Deploy button, no
usage statistics). The screenshot of the incident view goes to
``$DASHBOARD_SCREENSHOT`` (default: test-artifacts/dashboard.png); ``make
screenshot`` refreshes docs/dashboard.png for the README.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
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
ANALYST, NOTE = "Ada Lovelace", "real selling into the close of a liquidity gap; no action"

pytestmark = [
    pytest.mark.broker, pytest.mark.browser, pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium (make browser)"),
]
sync_playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").sync_playwright


@contextmanager
def streamlit_page(environment: dict[str, str], log: list[str]) -> Iterator[str]:
    """``streamlit run dashboard/app.py`` from the repository root, as the demo starts it (so the
    project's .streamlit/config.toml applies), on a free port; yields its URL once healthy and
    leaves its output in ``log``."""
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith(("KAFKA_", "DASHBOARD_"))}
    env.update(environment)
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1"],
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
        log.append(process.stdout.read().decode(errors="replace"))


@contextmanager
def browser_page(url: str):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            # Streamlit scrolls inside its own container: a tall window shows the incident view too.
            page = browser.new_page(viewport={"width": 1600, "height": 2400})
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


def grid(page, key: str) -> list[dict[str, str]]:
    """The rows of the table in the container ``key``, from the grid's accessible table."""
    box = page.locator(f".st-key-{key}")
    headers = [text.strip() for text in box.locator("th").all_inner_texts()]
    cells = [text.strip() for text in box.locator("td").all_inner_texts()]
    if not headers:
        return []  # not drawn yet
    return [dict(zip(headers, cells[start:start + len(headers)])) for start in range(0, len(cells), len(headers))]


def eventually(check, what: str, timeout_s: float = 30) -> None:
    """Until ``check()`` is true: the page redraws as data arrives, so a reading taken mid-refresh
    may be partial; only a reading that never comes right fails."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"the page never showed {what}"
        time.sleep(0.25)


def open_incident(page, words: str) -> None:
    picker = page.locator('[data-testid="stSelectbox"]').filter(has_text="Open incident")
    picker.click()
    page.keyboard.type(words)
    page.keyboard.press("Enter")


def lowest_opacity(page, seconds: float) -> tuple[float, int]:
    """The lowest opacity any element of the page had over ``seconds`` of live refreshes (Streamlit
    fades an element it is redrawing once that takes over half a second), and the fewest traces the
    price chart had meanwhile."""
    lowest, fewest_traces = 1.0, 10**6
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        lowest = min(lowest, page.evaluate(
            "() => Math.min(...Array.from(document.querySelectorAll('[data-testid=\"stElementContainer\"]'))"
            ".map(node => parseFloat(getComputedStyle(node).opacity)))"))
        fewest_traces = min(fewest_traces, page.locator(".st-key-price_block .js-plotly-plot .trace").count())
        page.wait_for_timeout(100)
    return lowest, fewest_traces


def test_an_analyst_works_an_incident_on_the_live_page(published, world, publisher):
    anomalies = world.anomalies
    environment = published.environment(DASHBOARD_BUFFER_SIZE="100", DASHBOARD_REFRESH_SECONDS="1")
    assert len(anomalies) > 100  # more anomalies on the topic than the page keeps
    crash_id, crash = next((i, m) for i, m in world.final_incidents().items() if m["kind"] == "flash_crash")
    log: list[str] = []
    with streamlit_page(environment, log) as url, browser_page(url) as page:
        eventually(lambda: page_metrics(page).get("Anomalies") == f"{len(anomalies):,}", "the topic total")
        severities = [record["severity"] for record in anomalies]
        shown = page_metrics(page)
        assert (shown["Max severity"], shown["Average severity"], shown["Incidents"]) == (
            f"{max(severities):.3f}", f"{sum(severities) / len(severities):.3f}", str(len(world.final_incidents())))
        true_counts = Counter(record["symbol"] for record in anomalies)
        eventually(lambda: {row["symbol"]: int(row["anomalies"]) for row in grid(page, "instruments")} == true_counts,
                   f"each instrument's true anomaly count {dict(true_counts)}")
        assert all(int(row["anomalies in memory"]) > 0 for row in grid(page, "instruments"))
        assert page.locator('[data-testid="stAppDeployButton"]').count() == 0
        assert page.get_by_role("button", name="Deploy").count() == 0

        # Live refreshes redraw in place: nothing greys out, the price chart never goes blank.
        chart = page.locator(".st-key-price_block .js-plotly-plot").first.element_handle()
        updated = page.get_by_text("Updated ", exact=False).first.inner_text()
        lowest, fewest_traces = lowest_opacity(page, seconds=4)
        assert page.get_by_text("Updated ", exact=False).first.inner_text() != updated, "the page did not refresh"
        assert lowest > 0.5, f"part of the page greyed out during a refresh (opacity {lowest})"
        assert fewest_traces > 0, "the price chart was blank during a refresh"
        assert chart.evaluate("node => node.isConnected"), "a refresh rebuilt the chart instead of updating it"

        # Open the flash crash: its summary, its chart, its member anomalies.
        open_incident(page, f"{crash['symbol']} · flash crash")
        detail = page.locator(".st-key-incident_detail")
        detail.get_by_text(crash["summary"], exact=True).wait_for(timeout=15_000)
        page.locator(".st-key-incident_detail .js-plotly-plot").wait_for(state="visible", timeout=15_000)
        page.wait_for_timeout(1500)  # a refresh or two, so the picture shows the settled page
        for _ in range(30):  # and between two refreshes, without the "Running" indicator
            if not page.locator('[data-testid="stStatusWidget"]').is_visible():
                break
            page.wait_for_timeout(50)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))
        member_times = {record["ts_event"].replace("T", " ")[:23] for record in anomalies
                        if record["incident_id"] == crash_id}
        rows = grid(page, "incident_members")
        assert rows and all(row["time (UTC)"] in member_times for row in rows)

        # Record a review; what was typed survives the live refreshes until it is saved.
        page.get_by_text("Dismiss as false positive").click()
        page.get_by_label("Your name").fill(ANALYST)
        page.get_by_label("Note").fill(NOTE)
        page.wait_for_timeout(2500)
        assert page.get_by_label("Your name").input_value() == ANALYST
        page.get_by_role("button", name="Save review").click()
        page.get_by_text("Saved: dismissed (false positive).").wait_for(timeout=15_000)

        # A reload is a new session: the review comes back from the topic.
        page.reload()
        crash_row = {"symbol": crash["symbol"], "kind": f"flash crash ({crash['direction']})",
                     "review": f"dismissed (false positive) by {ANALYST}"}
        eventually(lambda: any(crash_row.items() <= row.items() for row in grid(page, "incident_queue")),
                   "the review in the queue after a reload")
        open_incident(page, f"{crash['symbol']} · flash crash")
        reviewed = detail.get_by_text(f"Reviewed: dismissed (false positive) by {ANALYST} at ", exact=False)
        reviewed.wait_for(timeout=15_000)
        assert f"Note: {NOTE}" in reviewed.inner_text()

        # A symbol made of HTML arrives while the page is open: shown as text, never as HTML.
        hostile = dict(anomalies[-1], symbol=HOSTILE_SYMBOL, anomaly_id="hostile-1", incident_id="INC-hostile")
        publisher(published.anomalies, [orjson.dumps(hostile)])
        title = page.locator(".st-key-price_block .annotation-text").filter(has_text=HOSTILE_SYMBOL)
        title.first.wait_for(state="attached", timeout=15_000)  # a chart panel titled with it, as text
        eventually(lambda: any(row["symbol"] == HOSTILE_SYMBOL for row in grid(page, "instruments")),
                   "the hostile symbol as a row of the instruments table")
        assert page.locator("#injected").count() == 0, "a symbol was rendered as HTML"
        assert page.locator('[data-testid="stException"]').count() == 0
    assert "Collecting usage statistics" not in log[0]
    assert SCREENSHOT.stat().st_size > 50_000


def test_broker_down_gives_a_banner_not_a_stack_trace():
    nobody = f"127.0.0.1:{free_port()}"
    log: list[str] = []
    with streamlit_page({"KAFKA_BROKERS": nobody}, log) as url, browser_page(url) as page:
        banner = page.locator('[data-testid="stAlert"]').filter(has_text="Kafka broker unreachable")
        banner.wait_for(state="visible", timeout=30_000)
        assert nobody in banner.inner_text()
        page.get_by_role("button", name="Retry now").wait_for(state="visible", timeout=10_000)  # drawn just after the banner
        assert page.locator('[data-testid="stException"]').count() == 0
        assert "Traceback" not in page.content()


def test_hostile_review_input_in_the_browser(published, world):
    """What an analyst can paste: a 10,000-character name and a 1 MB note appear in the form (with
    max_chars the browser dropped such a paste whole, without a word) and saving refuses them,
    saying how long they are, nothing written; a double click on Save writes one review."""
    from connectors.topic_readers import TopicTail

    environment = published.environment(DASHBOARD_REFRESH_SECONDS="1")
    crash = next(m for m in world.final_incidents().values() if m["kind"] == "flash_crash")
    note = "\u202e" + "n" * 499
    log: list[str] = []
    with streamlit_page(environment, log) as url, browser_page(url) as page:
        open_incident(page, f"{crash['symbol']} · flash crash")
        name_field, note_field = page.get_by_label("Your name"), page.get_by_label("Note")
        name_field.wait_for(timeout=30_000)
        name_field.fill("N" * 10_000)
        assert len(name_field.input_value()) == 10_000
        page.get_by_role("button", name="Save review").click()
        page.get_by_text("Your name is 10,000 characters; a review keeps at most 80.").wait_for(timeout=15_000)
        name_field.fill(ANALYST)
        note_field.fill("n" * 1_000_000)
        page.get_by_role("button", name="Save review").click()
        page.get_by_text("The note is 1,000,000 characters; a review keeps at most 500: shorten it.").wait_for(
            timeout=30_000)
        assert len(note_field.input_value()) == 1_000_000  # still there, to be shortened
        note_field.fill(note)
        page.get_by_role("button", name="Save review").dblclick()
        page.get_by_text("Saved: acknowledged.").wait_for(timeout=15_000)
        page.wait_for_timeout(3000)  # a second write, if any, has landed
        assert page.locator('[data-testid="stException"]').count() == 0
    tail = TopicTail(published.brokers, published.reviews, start_back=None)
    try:
        messages, _ = tail.read(max_seconds=10)
    finally:
        tail.close()
    written = [orjson.loads(message.value) for message in messages]
    assert [(review["analyst"], review["note"]) for review in written] == [(ANALYST, note)], (
        f"{len(written)} reviews written")

"""RudderStack's browser SDK (``@rudderstack/analytics-js``, its ``bundled`` build, unchanged)
sends from a page on another origin than the collector.

It keeps its defaults except what pointing it at Sextant takes: the collector as its
``dataPlaneUrl`` and its ``configUrl`` (the collector answers ``/sourceConfig/``), and
``useBeacon`` where a test is about the beacon. Each test names its events uniquely and reads
them back through the gateway: exactly what was sent, once, dated when they were made.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page

from tests.browser.site import static_site
from tests.browser.stack import WRITE, Stack, project_documents, running_stack
from tests.infra import wait_for

CLIENTS = Path(__file__).parent / "dist"

PAGE = """<!doctype html><html><head><title>shop</title></head><body>
<script src="rudderstack.js"></script>
<script>
const beacon = new URLSearchParams(location.search).get('beacon') === '1';
window.rudder = new RudderAnalytics();
rudder.load({key!r}, {collector!r}, beacon
  ? {{configUrl: {collector!r}, useBeacon: true}}
  : {{configUrl: {collector!r}}});
rudder.ready(() => {{ window.rudderReady = true; }});
window.send = (name, n) => {{
  for (let i = 0; i < n; i++) rudder.track(name, {{i}});
}};
</script></body></html>
"""


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("rudderstack-stack")
    with running_stack(kafka_bootstrap, folder, project_documents()) as running:
        yield running


@pytest.fixture(scope="module")
def site(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The shop's pages, on an origin the project allows (``http://127.0.0.1:*``)."""
    root = tmp_path_factory.mktemp("rudderstack-site")
    shutil.copy(CLIENTS / "rudderstack.js", root / "rudderstack.js")
    (root / "shop.html").write_text(PAGE.format(key=WRITE, collector=stack.collector))
    with static_site(root) as origin:
        yield origin


def open_shop(context: BrowserContext, site: str, *, beacon: bool = False) -> Page:
    page = context.new_page()
    page.goto(f"{site}/shop.html{'?beacon=1' if beacon else ''}")
    page.wait_for_function("window.rudderReady === true", timeout=20_000)
    return page


def seen(page: Page, urls: list[str], part: str, times: int = 1) -> bool:
    """Whether ``times`` URLs containing ``part`` are in ``urls``, which the page's events
    fill (the sync API delivers them only while it is called, hence the short wait)."""
    page.wait_for_timeout(10)
    return sum(part in url for url in urls) >= times


def test_rudderstack_events_are_stored_once(
    stack: Stack, site: str, browser_context: BrowserContext
) -> None:
    name = f"rs {uuid.uuid4().hex[:8]}"
    page = open_shop(browser_context, site)
    page.evaluate("name => window.send(name, 10)", name)
    stack.wait_count(name, 10)


def test_an_event_queued_offline_keeps_the_time_it_was_made(
    stack: Stack, site: str, browser_context: BrowserContext
) -> None:
    name = f"rs offline {uuid.uuid4().hex[:8]}"
    page = open_shop(browser_context, site)
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    browser_context.set_offline(True)
    try:
        made = datetime.now(UTC)
        page.evaluate("name => window.send(name, 1)", name)
        # The SDK tries, fails, and retries with a growing delay: two failures are seconds.
        wait_for(lambda: seen(page, failed, "/v1/track", times=2), 30, 0.1, "two failed sends")
    finally:
        browser_context.set_offline(False)
    back_online = datetime.now(UTC)  # it cannot have arrived before
    assert back_online - made > timedelta(seconds=1)
    stack.wait_count(name, 1, timeout_s=90)
    # Dated when it was made, not when it arrived: before ``made`` + 0.5 s < ``back_online``.
    end = made + timedelta(milliseconds=500)
    assert stack.count_between(name, made - timedelta(minutes=5), end) == 1


def test_with_use_beacon_what_is_queued_arrives_as_the_page_unloads(
    stack: Stack, site: str, browser_context: BrowserContext
) -> None:
    name = f"rs beacon {uuid.uuid4().hex[:8]}"
    page = open_shop(browser_context, site, beacon=True)
    batches = batch_requests(stack)
    page.evaluate("name => window.send(name, 4)", name)  # below its batch size: held
    page.goto("about:blank")
    stack.wait_count(name, 4)
    # sendBeacon posts to /beacon/v1/batch (counted with /v1/batch); Playwright does not
    # report beacons, the collector does. No other test of this stack posts a batch.
    assert batch_requests(stack) > batches


def batch_requests(stack: Stack) -> float:
    """The collector's count of answered batch requests (``/v1/batch`` and its aliases)."""
    metrics = httpx.get(f"{stack.collector}/metrics", timeout=10).text
    found = re.search(
        r'^sextant_collector_requests_total\{endpoint="/v1/batch",status="200"\} (\S+)$',
        metrics,
        re.MULTILINE,
    )
    return float(found.group(1)) if found else 0.0

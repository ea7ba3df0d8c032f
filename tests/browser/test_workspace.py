"""The workspace in Chromium against real parts (collector, processor, gateway with its sink,
Kafka, the embedded warehouse): sign in with the keys, open every page at a desktop's and a
phone's size with no console error, check that the numbers shown are the API's for the same
query, that a breakdown metric's headline follows new events live without a reload, that a
document's history (its audit entries) is shown to an owner and explained to a viewer, and save
each page's screenshot into docs/screenshots/ for the README.

The shop's data is the demo's (``deploy/local/demo_traffic.py``, seeded): two weeks of history
and a few minutes of live visitors, sent with the Python SDK through the collector.
"""

from __future__ import annotations

import importlib.util
import random
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request
from playwright.sync_api import Error as PlaywrightError

from sextant.core.config_file import documents_from_file, load_config_file
from sextant.schemas.config import ApiKey, ConfigDocument, KeyKind, Role, hash_key
from sextant.sdk import Client
from tests.browser.stack import REPO, Stack, running_stack
from tests.infra import wait_for

READ = "sx_read_workspace_000000000000000"
OWNER = "sx_read_workspace_owner_000000000"
ADMIN = "sx_admin_workspace_00000000000000"
WRITE = "sx_write_workspace_00000000000000"
SHOTS = REPO / "docs" / "screenshots"
PAGES = [
    "outcomes",
    "metrics",
    "funnels",
    "retention",
    "experiments",
    "alerts",
    "web",
    "feedback",
    "admin",
]
SIZES = {"desktop": (1366, 768), "phone": (390, 844)}


def _demo_traffic() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "demo_traffic", REPO / "deploy" / "local" / "demo_traffic.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _documents() -> list[ConfigDocument]:
    """The demo project's documents (metrics, experiment, alert rule, outcomes, surveys) with
    keys of this test's own, and the alert rule's webhook left out."""
    config = load_config_file(REPO / "deploy" / "config" / "demo.yaml")
    project = config.projects[0]
    for rule in project.alert_rules:
        rule.pop("targets", None)
    project.keys = []
    config.admin_keys = []
    documents = documents_from_file(config)
    return [
        *documents,
        ApiKey(id="w", project_id="demo", key_kind=KeyKind.WRITE, key_hash=hash_key(WRITE)),
        ApiKey(id="r", project_id="demo", key_kind=KeyKind.READ, key_hash=hash_key(READ)),
        ApiKey(
            id="o",
            project_id="demo",
            key_kind=KeyKind.READ,
            key_hash=hash_key(OWNER),
            role=Role.OWNER,
            name="Demo owner",
        ),
        ApiKey(id="a", project_id="*", key_kind=KeyKind.ADMIN, key_hash=hash_key(ADMIN)),
    ]


def _api(stack: Stack, method: str, path: str, key: str = READ, **kwargs: Any) -> Any:
    response = httpx.request(
        method,
        f"{stack.gateway}{path}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
        **kwargs,
    )
    assert response.status_code == 200, response.text
    return response.json()


REPORT_MS = 240_000
"""The experiment report computes its results from the events table (the demo merges persons),
with CUPED over the demo's two weeks: seconds on a quiet machine, minutes on a loaded one."""


@pytest.fixture(scope="module")
def shop(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("workspace")
    with running_stack(
        kafka_bootstrap, folder, _documents(), ("collector", "processor", "gateway")
    ) as stack:
        demo = _demo_traffic()
        client = Client(
            WRITE, host=stack.collector, flush_at=500, max_queue_size=200_000, when_full="block"
        )
        traffic = demo.Shop(client, random.Random(7))
        demo.send_history(traffic, visitors_per_day=60)
        for _ in range(150):  # a few minutes' worth of live visitors, exposures included
            traffic.visit(datetime.now(UTC) - timedelta(seconds=random.uniform(5, 240)), live=True)
        assert client.flush(120)
        client.shutdown(10)
        expected = int(traffic.orders)
        since = datetime.now(UTC) - timedelta(days=demo.HISTORY_DAYS + 1)

        def stored() -> bool:
            until = datetime.now(UTC) + timedelta(minutes=5)
            body = {
                "event": "Order Completed",
                "from": since.isoformat(),
                "to": until.isoformat(),
                "interval": "day",
            }
            trends = _api(stack, "POST", "/v1/insights/trends", json=body)
            return sum(series["total"] for series in trends["series"]) >= expected

        wait_for(stored, 300, 1.0, f"{expected} orders in the warehouse")
        # The orders may land before the page views of the same visits: the pages and the
        # API must read the same, settled numbers.
        wait_for(stack.settled, 120, 0.5, "every event in the warehouse")
        yield stack


@contextmanager
def _signed_in(browser: Browser, stack: Stack, read: str, admin: str = "") -> Iterator[Page]:
    """A desktop-sized tab signed in with the keys; it must log no error."""
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    try:
        tab = context.new_page()
        # In front, so Chromium does not hold back its timers and frames for a background tab
        # (the package's browser keeps other tests' tabs).
        tab.bring_to_front()
        errors: list[str] = []
        tab.on("console", lambda m: _record(m, errors))
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.goto(f"{stack.gateway}/")
        tab.fill("#read-key", read)
        tab.fill("#admin-key", admin)
        tab.click("#key-signin button[type=submit]")
        _wait_rendered(tab, f"nav.nav a[data-page={'outcomes' if read else 'admin'}]")
        yield tab
        assert errors == [], errors
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser, shop: Stack) -> Iterator[Page]:
    with _signed_in(browser, shop, READ, ADMIN) as tab:
        yield tab


def _record(message: ConsoleMessage, errors: list[str]) -> None:
    if message.type == "error":
        errors.append(message.text)


def _wait_rendered(tab: Page, selector: str, timeout_ms: float = 30_000) -> None:
    """Until ``selector`` is in the page."""
    _wait_page(tab, "s => document.querySelector(s) !== null", selector, timeout_ms)


def _wait_text(tab: Page, text: str, timeout_ms: float = 30_000) -> None:
    """Until the page shows ``text``."""
    _wait_page(tab, "t => document.body.innerText.includes(t)", text, timeout_ms)


def _wait_page(tab: Page, predicate: str, arg: str, timeout_ms: float) -> None:
    """Until ``predicate(arg)`` holds in the page, asked every 250 ms until the deadline.
    Playwright's own waits poll on animation frames, which Chromium holds back for a tab
    that is not in front (the session's browser keeps other tests' tabs), and a report page
    renders once, with nothing that would bring a frame."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not _holds(tab, predicate, arg):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{arg!r} not shown within {timeout_ms / 1000:g} s at {tab.url}; the page shows: "
                f"{_page_text(tab)!r}"
            )
        tab.wait_for_timeout(250)


def _page_text(tab: Page) -> str:
    try:
        return str(tab.evaluate("() => document.body.innerText.slice(0, 600)"))
    except PlaywrightError as error:
        return f"(unreadable: {error})"


def _holds(tab: Page, predicate: str, arg: str) -> bool:
    try:
        return bool(tab.evaluate(predicate, arg))
    except PlaywrightError:  # the page is between documents (signing in reloads it)
        return False


def _number(tab: Page, selector: str) -> float:
    text = tab.get_attribute(selector, "data-value")
    assert text not in (None, ""), selector
    return float(text)


def test_the_sign_in_page_says_which_key_does_what(browser: Browser, shop: Stack) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    tab = context.new_page()
    tab.goto(f"{shop.gateway}/")
    _wait_rendered(tab, "#read-key")
    text = tab.inner_text("body")
    for words in ("Read key", "Admin key", "Write keys", "public", "private"):
        assert words in text
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SHOTS / "signin-phone.png"), full_page=True)
    tab.set_viewport_size({"width": 1366, "height": 768})
    tab.screenshot(path=str(SHOTS / "signin-desktop.png"), full_page=True)
    tab.fill("#read-key", "sx_read_wrong_000000000000000000")
    tab.click("#key-signin button[type=submit]")
    _wait_text(tab, "was not accepted")
    context.close()


@pytest.mark.timeout(600)
def test_every_page_opens_at_both_sizes(page: Page, shop: Stack) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    ready = {
        "outcomes": "[data-outcome] .tile-value[data-field=current]",
        "metrics": "#headline[data-value]",
        "funnels": "[data-step='1']",
        "retention": "[data-cohort-users]",
        "experiments": "[data-experiment]",
        "alerts": "[data-rule-state]",
        "web": "[data-field=visitors]",
        "feedback": "#score[data-value]",
        "admin": "#admin table",
    }
    for size, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        for name in PAGES:
            route = "metrics/revenue" if name == "metrics" else name
            page.goto(f"{shop.gateway}/#/{route}")
            _wait_rendered(page, ready[name], 60_000)
            page.wait_for_load_state("networkidle")
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{name} scrolls sideways at {width}px"
            page.screenshot(path=str(SHOTS / f"{name}-{size}.png"), full_page=True)
        page.goto(f"{shop.gateway}/#/experiments/new-checkout")
        _wait_rendered(page, "[data-verdict]", REPORT_MS)
        page.screenshot(path=str(SHOTS / f"experiment-{size}.png"), full_page=True)


def _opened(page: Page, url: str, path: str, selector: str) -> Request:
    """Open ``url`` and wait for ``selector``; the page's first request to ``path``."""
    with page.expect_request(lambda r: urlsplit(r.url).path == path) as asked:
        page.goto(url)
    _wait_rendered(page, selector)
    return asked.value


def _same_query(shop: Stack, request: Request) -> Any:
    """The API's answer to the page's own request: the same range to the millisecond (the
    page reads its clock later than the test, and ranges that end at "now" move)."""
    parts = urlsplit(request.url)
    if request.method == "POST":
        return _api(shop, "POST", parts.path, json=request.post_data_json)
    return _api(shop, "GET", parts.path, params=dict(parse_qsl(parts.query)))


@pytest.mark.timeout(600)
def test_numbers_shown_are_the_apis(page: Page, shop: Stack) -> None:
    # Web: visitors over the last 24 hours.
    asked = _opened(page, f"{shop.gateway}/#/web", "/v1/web", "[data-field=visitors]")
    assert "from" in asked.url
    web = _same_query(shop, asked)
    assert page.inner_text("[data-field=visitors]") == f"{web['totals']['visitors']:,}"
    # Feedback: NPS over 30 days.
    asked = _opened(
        page, f"{shop.gateway}/#/feedback", "/v1/surveys/nps/results", "#score[data-value]"
    )
    nps = _same_query(shop, asked)
    assert _number(page, "#score") == pytest.approx(nps["overall"]["value"])
    # Funnel: users at each step, the page's default steps over 7 days.
    asked = _opened(page, f"{shop.gateway}/#/funnels", "/v1/insights/funnels", "[data-step='1']")
    steps = [page.input_value(f"#funnel-steps li:nth-child({i + 1}) input") for i in range(5)]
    assert [s["event"] for s in asked.post_data_json["steps"]] == steps
    funnel = _same_query(shop, asked)
    for step in funnel["groups"][0]["steps"]:
        assert page.inner_text(f"[data-step='{step['step']}']") == f"{step['users']:,}"
    # Experiment: units per variant.
    page.goto(f"{shop.gateway}/#/experiments/new-checkout")
    _wait_rendered(page, "[data-units]", REPORT_MS)
    results = _api(shop, "GET", "/v1/experiments/new-checkout/results")
    for variant in results["variants"]:
        assert page.inner_text(f"[data-units='{variant['id']}']") == f"{variant['units']:,}"


def _revenue_api(stack: Stack, start: datetime, end: datetime) -> float:
    body = _api(
        stack,
        "GET",
        "/v1/metrics/revenue/series",
        params={
            "from": start.isoformat(),
            "to": end.isoformat(),
            "interval": "minute",
            "breakdown": "true",
        },
    )
    return sum(p["value"] or 0 for s in body["series"] for p in s["points"])


def test_a_breakdown_metric_follows_new_events_live(page: Page, shop: Stack) -> None:
    page.goto(f"{shop.gateway}/#/metrics/revenue")
    _wait_rendered(page, "#headline[data-value]")
    wait_for(lambda: page.inner_text("#live-status") == "live", 60, 0.2, "the live stream")
    opened = datetime.now(UTC)

    def agree() -> bool:
        now = datetime.now(UTC)
        api = _revenue_api(shop, now - timedelta(minutes=50), now + timedelta(minutes=1))
        return _number(page, "#headline") == pytest.approx(api)

    wait_for(agree, 60, 0.5, "the page's revenue to be the API's")
    before = _number(page, "#headline")
    updates = int(page.get_attribute("#live-status", "data-updates") or 0)
    client = Client(WRITE, host=shop.collector)
    for plan, amount in (("pro", 200.0), ("free", 280.0)):
        client.track(
            "buyer-live", "Order Completed", {"revenue": amount, "plan": plan, "currency": "EUR"}
        )
    assert client.flush(30)
    acknowledged = time.monotonic()
    client.shutdown(5)
    wait_for(
        lambda: _number(page, "#headline") == pytest.approx(before + 480),
        60,
        0.1,
        "the headline with the new orders",
    )
    seconds = time.monotonic() - acknowledged
    assert int(page.get_attribute("#live-status", "data-updates") or 0) > updates, (
        "no reload: live points"
    )
    # The API answers the same once the sink has written the windows.
    wait_for(
        lambda: (
            _revenue_api(
                shop, opened - timedelta(hours=1), datetime.now(UTC) + timedelta(minutes=1)
            )
            == pytest.approx(before + 480)
        ),
        60,
        0.5,
        "the API's series with the new orders",
    )
    rows = page.inner_text("#breakdown-values")
    assert "pro" in rows
    assert "free" in rows
    assert seconds < 30


def _history_rows(tab: Page, count: int) -> list[dict[str, Any]]:
    """The history's rows once it shows ``count``: each one's action, changed fields and text."""
    rows = "#history-entries tbody tr"
    _wait_page(
        tab, f"n => document.querySelectorAll('{rows}').length === Number(n)", str(count), 30_000
    )
    shown: list[dict[str, Any]] = tab.eval_on_selector_all(
        rows,
        """rows => rows.map(r => ({
            action: r.dataset.action,
            fields: [...r.querySelectorAll('[data-field]')].map(f => f.dataset.field),
            text: r.innerText,
        }))""",
    )
    return shown


def test_a_documents_history_is_shown_to_an_owner_and_explained_to_a_viewer(
    browser: Browser, shop: Stack
) -> None:
    target = "metric:demo:refunds"
    link = f"a[data-history='{target}']"
    metric = {"name": "Refunds", "metric_kind": "count", "event": "Order Refunded"}
    versions = [metric | {"breakdown_limit": n} for n in range(10, 30)]  # more than a page
    versions.append(versions[-1] | {"name": "Refunds (all plans)"})
    versions.append(versions[-1] | {"metric_kind": "sum", "property": "amount", "unit": "EUR"})
    for version in versions:
        _api(shop, "PUT", "/v1/admin/projects/demo/metrics/refunds", OWNER, json=version)

    with _signed_in(browser, shop, OWNER) as tab:
        tab.goto(f"{shop.gateway}/#/metrics/refunds")
        _wait_rendered(tab, link)
        tab.click(link)
        rows = _history_rows(tab, 20)
        newest, renamed = rows[0], rows[1]
        assert newest["action"] == renamed["action"] == "config.changed"
        assert newest["fields"] == ["metric_kind", "property", "unit"]
        assert '"count" → "sum"' in newest["text"]
        assert "Demo owner" in newest["text"]
        assert "api_key:demo:o" in newest["text"]
        assert renamed["fields"] == ["name"]
        assert '"Refunds" → "Refunds (all plans)"' in renamed["text"]
        tab.screenshot(path=str(SHOTS / "history-desktop.png"))  # the newest entries
        tab.set_viewport_size({"width": 390, "height": 844})
        assert tab.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 1
        tab.screenshot(path=str(SHOTS / "history-phone.png"))
        tab.click("#history-older")
        rows = _history_rows(tab, len(versions))
        assert rows[-1]["action"] == "config.created"
        assert tab.is_hidden("#history-older")

    with _signed_in(browser, shop, READ) as tab:  # a viewer: no request the role cannot make
        tab.goto(f"{shop.gateway}/#/metrics/refunds")
        _wait_rendered(tab, link)
        tab.click(link)
        _wait_text(tab, "The history needs an owner key")
        assert tab.query_selector("#history-entries") is None

    with _signed_in(browser, shop, "", ADMIN) as tab:  # the admin view lists every document
        tab.goto(f"{shop.gateway}/#/admin")
        _wait_rendered(tab, f"[data-documents=demo] {link}")
        tab.click(f"[data-documents=demo] {link}")
        assert _history_rows(tab, 20)[0]["fields"] == ["metric_kind", "property", "unit"]

"""The browser SDK's delivery in Chromium, against a stand-in collector on another origin.

What only a real browser can show: the batch is a CORS-simple request (no preflight), the
last events leave in a beacon when the page is left, ``Retry-After`` is honoured when the
collector exposes it, and the definitions are revalidated with the browser's own
``If-None-Match`` (a 304) without a preflight either.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page

from tests.browser.site import static_site

REPO = Path(__file__).parents[2]
BUNDLE = REPO / "sdk" / "js" / "dist" / "sextant-experiments.min.js"
DEFINITIONS = [
    {
        "id": "checkout",
        "variants": [{"id": "control", "weight": 0.5}, {"id": "one-page", "weight": 0.5}],
        "coverage": 1,
        "seed": None,
        "hash_version": 2,
        "unit": "anonymousId",
        "start": None,
        "stop": None,
    }
]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Collector:
    """Records every request; answers the batch endpoint from ``statuses`` (then 200)."""

    origin: str = ""
    requests: list[Request] = field(default_factory=list)
    statuses: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def batches(self) -> list[dict[str, Any]]:
        with self.lock:
            posts = [r for r in self.requests if r.method == "POST"]
        return [json.loads(r.body) for r in posts]

    def events(self) -> list[dict[str, Any]]:
        return [event for batch in self.batches() for event in batch["batch"]]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events()
            if len(events) >= count:
                return events
            time.sleep(0.05)
        raise AssertionError(f"{count} events expected, got {self.events()}")


def _handler(collector: Collector) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1, as the collector (uvicorn) answers: Chromium was seen not to revalidate
        # this server's HTTP/1.0 answers (no If-None-Match on the next request).
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            with collector.lock:
                collector.requests.append(Request(self.command, self.path, headers, body))

        def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Expose-Headers", "Retry-After, ETag")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_OPTIONS(self) -> None:  # a preflight: recorded so that tests can say there was none
            self._record()
            self._answer(204, b"", {"Access-Control-Allow-Headers": "*"})

        def do_POST(self) -> None:
            self._record()
            with collector.lock:
                status, headers = collector.statuses.pop(0) if collector.statuses else (200, {})
            if status == 200:
                count = len(json.loads(collector.requests[-1].body)["batch"])
                body = json.dumps({"accepted": count, "rejected": []}).encode()
                self._answer(200, body, {"Content-Type": "application/json"})
            else:
                self._answer(status, b"busy", headers)

        def do_GET(self) -> None:
            self._record()
            if self.headers.get("If-None-Match") == '"defs-1"':
                self._answer(304, b"", {"ETag": '"defs-1"'})
                return
            body = json.dumps(DEFINITIONS).encode()
            self._answer(200, body, {"Content-Type": "application/json", "ETag": '"defs-1"'})

    return Handler


@pytest.fixture
def collector() -> Iterator[Collector]:
    state = Collector()
    # "localhost" while the site is on 127.0.0.1: another origin, so CORS applies.
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.origin = f"http://localhost:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def site(tmp_path: Path, collector: Collector) -> Iterator[str]:
    if not BUNDLE.exists():
        pytest.fail(f"{BUNDLE} is missing: run `make setup` (npm ci and npm run build in sdk/js)")
    shutil.copy(BUNDLE, tmp_path / BUNDLE.name)
    options = json.dumps({"host": collector.origin, "flushAt": 3, "flushInterval": 60000})
    (tmp_path / "index.html").write_text(
        "<!doctype html><title>Shop</title>"
        f'<script src="{BUNDLE.name}"></script>'
        f"<script>sextant.init('wk_browser', {options});</script>\n"
    )
    (tmp_path / "other.html").write_text("<!doctype html><title>Elsewhere</title>\n")
    # The asynchronous snippet of sdk/js/README.md: calls are recorded until the bundle loads.
    (tmp_path / "async.html").write_text(
        "<!doctype html><title>Async</title><script>"
        "window.sextant = window.sextant || [];"
        '["init", "track", "page", "identify", "alias", "group", "reset"].forEach(function (m) {'
        "  sextant[m] = sextant[m] || function () {"
        "    sextant.push([m].concat([].slice.call(arguments))); };"
        "});"
        f"sextant.init('wk_browser', {options});"
        "sextant.identify('user-1');"
        "sextant.track('Early');"
        f'</script><script async src="{BUNDLE.name}"></script>\n'
    )
    with static_site(tmp_path) as origin:
        yield origin


def open_shop(context: BrowserContext, site: str) -> Page:
    page = context.new_page()
    page.goto(f"{site}/index.html?utm_source=test")
    return page


def test_a_batch_is_a_simple_request_with_no_preflight(
    browser_context: BrowserContext, site: str, collector: Collector
) -> None:
    page = open_shop(browser_context, site)  # the first page view, then two tracks: 3 events
    page.evaluate("() => { sextant.track('Added', {sku: 1}); sextant.track('Added', {sku: 2}) }")
    events = collector.wait_for(3)
    assert [e["type"] for e in events] == ["page", "track", "track"]
    post = next(r for r in collector.requests if r.method == "POST")
    assert post.path == "/v1/batch"
    assert post.headers["content-type"].startswith("text/plain")
    assert not [r for r in collector.requests if r.method == "OPTIONS"], "no preflight"
    assert collector.batches()[0]["writeKey"] == "wk_browser"
    page_event = events[0]
    assert page_event["context"]["campaign"] == {"source": "test"}
    assert page_event["context"]["page"]["title"] == "Shop"
    assert page_event["context"]["library"]["name"] == "@sextant/browser"
    assert page_event["anonymousId"] == page.evaluate("() => sextant.anonymousId()")
    # The collector has the request before the page has its answer: wait for the latter.
    page.wait_for_function("() => sextant.stats().delivered === 3", timeout=10_000)
    assert page.evaluate("() => sextant.stats().pending") == 0


def test_the_last_events_leave_in_a_beacon(
    browser_context: BrowserContext, site: str, collector: Collector
) -> None:
    page = open_shop(browser_context, site)
    page.evaluate("() => sextant.track('Clicked Away')")
    page.goto(f"{site}/other.html")  # pagehide: one page view and one track, below flushAt
    events = collector.wait_for(2)
    assert [e.get("event") for e in events] == [None, "Clicked Away"]
    assert len(collector.batches()) == 1


def test_retry_after_is_honoured_with_the_same_message_ids(
    browser_context: BrowserContext, site: str, collector: Collector
) -> None:
    collector.statuses.append((503, {"Retry-After": "1"}))
    page = open_shop(browser_context, site)
    started = time.monotonic()
    page.evaluate("() => { sextant.track('A'); sextant.track('B'); }")
    collector.wait_for(6)  # the refused batch of 3, then the same 3 again
    elapsed = time.monotonic() - started
    first, second = collector.batches()[:2]
    assert [e["messageId"] for e in first["batch"]] == [e["messageId"] for e in second["batch"]]
    assert elapsed >= 0.9, "waited for Retry-After"
    assert page.evaluate("() => sextant.stats().retries") == 1


def test_definitions_are_revalidated_by_the_browser(
    browser_context: BrowserContext, site: str, collector: Collector
) -> None:
    page = open_shop(browser_context, site)
    page.evaluate("() => sextant.experimentsReady()")
    variant = page.evaluate("() => sextant.getVariant('checkout')")
    assert variant in ("control", "one-page")
    page.evaluate("() => sextant.refreshExperiments()")
    gets = [r for r in collector.requests if r.method == "GET"]
    assert gets[0].path == "/v1/experiments/definitions?writeKey=wk_browser"
    assert gets[-1].headers.get("if-none-match") == '"defs-1"', "revalidated, answered 304"
    assert page.evaluate("() => sextant.getVariant('checkout')") == variant
    assert not [r for r in collector.requests if r.method == "OPTIONS"], "no preflight"
    page.evaluate("() => sextant.flush()")
    exposures = [e for e in collector.events() if e.get("event") == "Experiment Viewed"]
    assert [e["properties"] for e in exposures] == [
        {"experiment_id": "checkout", "variation_id": variant}
    ]


def test_the_async_snippet_replays_calls_made_before_the_bundle_loaded(
    browser_context: BrowserContext, site: str, collector: Collector
) -> None:
    page = browser_context.new_page()
    page.goto(f"{site}/async.html")
    events = collector.wait_for(3)  # init (and its page view), identify and track, replayed
    assert sorted(e["type"] for e in events) == ["identify", "page", "track"]
    track = next(e for e in events if e["type"] == "track")
    assert track["event"] == "Early"
    assert track["userId"] == "user-1"
    assert page.evaluate("() => typeof sextant.track") == "function"

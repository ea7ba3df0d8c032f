"""Record what the real clients send: the payload fixtures in ``tests/fixtures/payloads/``.

Run ``python -m tests.browser.record_payloads`` (after ``make setup``) to record them again.
The browser clients (RudderStack's analytics-js, Segment's analytics-next, posthog-js, as
``tests/browser/package.json`` pins them, unchanged) run in Debian's Chromium on a page of
another origin; the Python clients (segment-analytics-python, posthog) run in this process.
Each sends to a collector app in this process (no Kafka: an in-memory record sink) behind a
recorder that keeps every request as it arrived: method, path, query, the headers that matter
to ingestion, the body and the time it arrived. ``tests/unit/test_client_payloads.py``
replays them through the collector and checks where every field lands.

Each client does the same things a product would: a page (named, with a category), a track
call, an identify with traits, a group, an alias, a call with a numeric user id, and one track
call made while the browser is offline, delivered once it is back online (its time must be
the call's, not the arrival's). RudderStack is recorded twice: with its default transport
(XHR) and with ``useBeacon``.
"""

from __future__ import annotations

import argparse
import base64
import shutil
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import uvicorn

from sextant.collector.app import create_app
from sextant.collector.settings import CollectorSettings
from sextant.core.aio_kafka import OutgoingRecord
from sextant.core.config_plane import ConfigState
from sextant.schemas.config import ApiKey, KeyKind, Project, hash_key
from tests.browser.site import static_site
from tests.infra import free_port, wait_for

HERE = Path(__file__).parent
CLIENTS = HERE / "dist"
FIXTURES = HERE.parent / "fixtures" / "payloads"
WRITE_KEY = "sx_write_recorded_000000000000000"
PROJECT = "recorded"
KEPT_HEADERS = (
    "content-type",
    "content-encoding",
    "authorization",
    "anonymousid",
    "sentat",
    "origin",
    "access-control-request-method",
    "access-control-request-headers",
)
"""Headers the collector reads (or a preflight asks about); others (user agent, cookies,
the browser's fetch metadata) are left out of the fixtures."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class Recorder:
    """An ASGI app in front of the collector that keeps each request it passes on."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrived = datetime.now(UTC)
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        status: list[int] = []

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, replay, answer)
        headers = {
            name.decode().lower(): value.decode()
            for name, value in scope["headers"]
            if name.decode().lower() in KEPT_HEADERS or name.decode().lower().startswith("rsa-")
        }
        entry: dict[str, Any] = {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode(),
            "headers": headers,
            "received_at": arrived.isoformat().replace("+00:00", "Z"),
            "status": status[0] if status else None,
        }
        entry |= encode_body(body)
        with self._lock:
            self.requests.append(entry)

    def take(self) -> list[dict[str, Any]]:
        with self._lock:
            taken, self.requests = self.requests, []
        return taken


def encode_body(body: bytes) -> dict[str, Any]:
    """The body as the fixture keeps it: JSON when it is JSON, text, or base64 (gzip)."""
    if not body:
        return {}
    try:
        return {"body_json": orjson.loads(body)}
    except orjson.JSONDecodeError:
        pass
    try:
        return {"body_text": body.decode()}
    except UnicodeDecodeError:
        return {"body_base64": base64.b64encode(body).decode()}


class NullSink:
    async def send(self, records: Any, timeout_s: float) -> None:
        self.last: list[OutgoingRecord] = list(records)


def project_state() -> ConfigState:
    state = ConfigState()
    for document in (
        Project(
            id=PROJECT,
            project_id=PROJECT,
            name="Recorded shop",
            allowed_origins=["http://127.0.0.1:*"],
            rate_limit_per_second=10_000,
        ),
        ApiKey(id="w", project_id=PROJECT, key_kind=KeyKind.WRITE, key_hash=hash_key(WRITE_KEY)),
    ):
        state.apply(document.config_key(), document)
    return state


@contextmanager
def recording_collector() -> Iterator[tuple[str, Recorder]]:
    """A collector on a free port behind a :class:`Recorder`; yields its URL and the recorder."""
    settings = CollectorSettings(topic_prefix="recorded")
    recorder = Recorder(create_app(settings, state=project_state(), sink=NullSink()))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(recorder, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 30, 0.05, "recording collector started")
        yield f"http://127.0.0.1:{port}", recorder
    finally:
        server.should_exit = True
        thread.join(10)


RUDDERSTACK_PAGE = """<!doctype html><html><head><title>shop</title></head><body>
<script src="rudderstack.js"></script>
<script>
window.rudder = new RudderAnalytics();
window.rudder.load({key!r}, {collector!r}, {{configUrl: {collector!r}{options}}});
window.rudder.ready(() => {{ window.ready = true; }});
window.calls = {{
  page: () => rudder.page('Docs', 'Pricing', {{path: '/pricing', plan_shown: 'pro'}}),
  track: (name) => rudder.track(name, {{revenue: 39.5, currency: 'EUR'}}),
  identify: () => rudder.identify('user-42', {{email: 'ada@example.com', plan: 'pro'}}),
  numeric: () => rudder.identify(4242, {{plan: 'team'}}),
  group: () => rudder.group('acme', {{seats: 3}}),
  alias: () => rudder.alias('user-42-renamed'),
}};
</script></body></html>
"""

SEGMENT_PAGE = """<!doctype html><html><head><title>shop</title></head><body>
<script src="segment.js"></script>
<script>
window.segment = AnalyticsBrowser.load({{writeKey: {key!r}, cdnURL: {collector!r}}});
window.segment.ready(() => {{ window.ready = true; }});
window.calls = {{
  page: () => segment.page('Docs', 'Pricing', {{path: '/pricing', plan_shown: 'pro'}}),
  track: (name) => segment.track(name, {{revenue: 39.5, currency: 'EUR'}}),
  identify: () => segment.identify('user-42', {{email: 'ada@example.com', plan: 'pro'}}),
  numeric: () => segment.identify(4242, {{plan: 'team'}}),
  group: () => segment.group('acme', {{seats: 3}}),
  alias: () => segment.alias('user-42-renamed'),
}};
</script></body></html>
"""

POSTHOG_PAGE = """<!doctype html><html><head><title>shop</title></head><body>
<script src="posthog.js"></script>
<script>
posthog.init({key!r}, {{
  api_host: {collector!r},
  opt_out_useragent_filter: true,
  loaded: () => {{ window.ready = true; }},
}});
window.calls = {{
  page: () => posthog.capture('$pageview', {{plan_shown: 'pro'}}),
  track: (name) => posthog.capture(name, {{revenue: 39.5, currency: 'EUR'}}),
  identify: () => posthog.identify('user-42', {{email: 'ada@example.com'}}, {{first_plan: 'pro'}}),
  numeric: () => posthog.capture('Numeric', {{distinct_id: 4242}}),
  group: () => posthog.group('company', 'acme', {{seats: 3}}),
  alias: () => posthog.alias('user-42-renamed'),
}};
</script></body></html>
"""

BROWSER_CLIENTS: dict[str, tuple[str, str, str]] = {
    # fixture name: (page template, extra load options, package)
    "rudderstack-js": (RUDDERSTACK_PAGE, "", "@rudderstack/analytics-js"),
    "rudderstack-js-beacon": (RUDDERSTACK_PAGE, ", useBeacon: true", "@rudderstack/analytics-js"),
    "segment-analytics-next": (SEGMENT_PAGE, "", "@segment/analytics-next"),
    "posthog-js": (POSTHOG_PAGE, "", "posthog-js"),
}


def package_version(package: str) -> str:
    manifest = HERE / "node_modules" / package / "package.json"
    return str(orjson.loads(manifest.read_bytes())["version"])


def record_browser_client(name: str, collector: str, recorder: Recorder) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM_ARGS

    template, options, package = BROWSER_CLIENTS[name]
    with static_site(CLIENTS) as origin, sync_playwright() as playwright:
        page_file = CLIENTS / f"record-{name}.html"
        page_file.write_text(template.format(key=WRITE_KEY, collector=collector, options=options))
        executable = shutil.which("chromium")
        if executable is None:
            raise SystemExit("Debian's chromium is missing: run `make setup` as root")
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        context = browser.new_context()
        try:
            page = context.new_page()
            page.goto(f"{origin}/{page_file.name}")
            page.wait_for_function("window.ready === true", timeout=20_000)
            for call in ("page", "identify", "group", "numeric", "alias"):
                page.evaluate(f"window.calls.{call}()")
            page.evaluate("window.calls.track('Order Completed')")
            page.wait_for_timeout(6_000)  # let every client send what it queued
            context.set_offline(True)
            page.evaluate("window.calls.track('Ordered Offline')")
            page.wait_for_timeout(3_000)  # the event waits in the client's queue
            context.set_offline(False)
            page.wait_for_timeout(12_000)  # retries back off; posthog-js sends every 3 s
            page.goto("about:blank")  # unload: beacons of what is still queued
            page.wait_for_timeout(2_000)
        finally:
            context.close()
            browser.close()
            page_file.unlink()
    return {
        "client": f"{package} {package_version(package)}",
        "how": "the npm package, unchanged, in Debian's Chromium on a page of another origin "
        f"(tests/browser/record_payloads.py); load options: {template_options(name)}",
        "requests": recorder.take(),
    }


def template_options(name: str) -> str:
    return {
        "rudderstack-js": "dataPlaneUrl and configUrl = the collector",
        "rudderstack-js-beacon": "dataPlaneUrl and configUrl = the collector, useBeacon: true",
        "segment-analytics-next": "writeKey, cdnURL = the collector",
        "posthog-js": "api_host = the collector, opt_out_useragent_filter: true",
    }[name]


def record_segment_python(collector: str, recorder: Recorder) -> dict[str, Any]:
    from segment.analytics import Client
    from segment.analytics.version import VERSION

    client = Client(WRITE_KEY, host=collector, sync_mode=True)
    client.page("user-42", "Docs", "Pricing", {"path": "/pricing"})
    client.screen("user-42", "App", "Settings", {"tab": "billing"})
    client.track("user-42", "Order Completed", {"revenue": 39.5, "currency": "EUR"})
    client.identify("user-42", {"email": "ada@example.com", "plan": "pro"})
    client.group("user-42", "acme", {"seats": 3})
    client.alias("user-42", "user-42-renamed")
    client.track(4242, "Numeric Id", anonymous_id=777)
    client.track(
        "user-42",
        "Backfilled",
        timestamp=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        integrations={"All": False, "Mixpanel": True},
    )
    return {
        "client": f"segment-analytics-python {VERSION}",
        "how": "the PyPI package, unchanged, sync_mode=True, host = the collector "
        "(tests/browser/record_payloads.py)",
        "requests": recorder.take(),
    }


def record_posthog_python(collector: str, recorder: Recorder) -> dict[str, Any]:
    from posthog import Posthog
    from posthog.version import VERSION

    client = Posthog(WRITE_KEY, host=collector, sync_mode=True, enable_exception_autocapture=False)
    client.capture("Order Completed", distinct_id="user-42", properties={"revenue": 39.5})
    client.capture(
        "Signed Up",
        distinct_id="user-42",
        properties={"$set": {"plan": "pro"}, "$set_once": {"first_plan": "free"}},
    )
    client.set(distinct_id="user-42", properties={"email": "ada@example.com"})
    client.set_once(distinct_id="user-42", properties={"first_seen": "2025-01-02"})
    client.alias(previous_id="anon-9", distinct_id="user-42")
    client.group_identify("company", "acme", {"seats": 3}, distinct_id="user-42")
    client.capture(
        "Backfilled",
        distinct_id="user-42",
        timestamp=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        properties={"$ip": "198.51.100.23"},
    )
    return {
        "client": f"posthog (posthog-python) {VERSION}",
        "how": "the PyPI package, unchanged, sync_mode=True, host = the collector "
        "(tests/browser/record_payloads.py)",
        "requests": recorder.take(),
    }


def write_fixture(name: str, recorded: dict[str, Any]) -> Path:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    path = FIXTURES / f"{name}.json"
    document = {
        "source": recorded["client"],
        "how": recorded["how"],
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "write_key": WRITE_KEY,
        "requests": recorded["requests"],
    }
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    return path


def main() -> None:
    every = [*BROWSER_CLIENTS, "segment-analytics-python", "posthog-python"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clients", nargs="*", choices=every, default=every)
    args = parser.parse_args()
    with recording_collector() as (collector, recorder):
        for name in args.clients:
            started = time.monotonic()
            recorder.take()
            if name == "segment-analytics-python":
                recorded = record_segment_python(collector, recorder)
            elif name == "posthog-python":
                recorded = record_posthog_python(collector, recorder)
            else:
                recorded = record_browser_client(name, collector, recorder)
            path = write_fixture(name, recorded)
            took = time.monotonic() - started
            print(f"{path}: {len(recorded['requests'])} requests ({took:.0f} s)")


if __name__ == "__main__":
    main()

"""The workspace in Chromium against a running Sextant (``make run``'s demo by default):

* **largest contentful paint** of the outcome board and of the metric explorer, each load in
  a fresh browser profile (nothing cached), beside the sign-in page's (static: no API call);
* **event to screen**: from the collector's acknowledgement of one event to the metric
  explorer showing it, without a reload, beside the same event's window arriving on the
  live stream read directly (what the page adds on top of the pipeline).

The probe metric (``bench-probe``, a count of ``Bench Probe``) is created through the admin
API, so the demo's own traffic never moves it.

    python -m bench.workspace [--gateway URL --collector URL --read-key K --admin-key K]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import threading
import time
from typing import Any

import httpx
from playwright.sync_api import Browser, Page, sync_playwright

from bench.common import Figure, report

COMMAND = "python -m bench.workspace  (with make run's demo running)"
PROBE = "bench-probe"
LCP_SCRIPT = """() => new Promise((resolve) => {
  let last = 0;
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) last = Math.max(last, entry.startTime);
  }).observe({ type: "largest-contentful-paint", buffered: true });
  setTimeout(() => resolve(last), 1500);
})"""
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def lcp(browser: Browser, gateway: str, read_key: str, route: str, ready: str) -> float:
    """One cold load's largest contentful paint, in ms, once ``ready`` is on the page."""
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    if read_key:
        context.add_init_script(f"localStorage.setItem('sextant.readKey', {read_key!r});")
    page = context.new_page()
    page.goto(f"{gateway}/{route}")
    page.wait_for_selector(ready, timeout=60_000)
    value = float(page.evaluate(LCP_SCRIPT))
    context.close()
    return value


def _until(page: Page, predicate: str, timeout_s: float) -> None:
    """Until the function ``predicate`` holds in the page, asked every 10 ms. Not Playwright's
    ``wait_for_function``: it evaluates its predicate in the page, which the workspace's
    Content-Security-Policy (no ``unsafe-eval``) refuses."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(predicate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{predicate} did not hold within {timeout_s:g} s")
        page.wait_for_timeout(10)


def ensure_probe(gateway: str, admin_key: str, project: str) -> None:
    response = httpx.put(
        f"{gateway}/v1/admin/projects/{project}/metrics/{PROBE}",
        json={"name": "Bench probe", "metric_kind": "count", "event": "Bench Probe"},
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=30,
    )
    response.raise_for_status()


class StreamWatch:
    """Reads the probe's live stream directly; records when each count first appears."""

    def __init__(self, gateway: str, read_key: str) -> None:
        self.seen: dict[int, float] = {}
        self._url = f"{gateway}/v1/metrics/{PROBE}/live"
        self._key = read_key
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(30)

    def _run(self) -> None:
        import orjson

        windows: dict[str, int] = {}
        headers = {"Authorization": f"Bearer {self._key}"}
        with httpx.stream("GET", self._url, headers=headers, timeout=None) as response:
            for line in response.iter_lines():
                if line.startswith("event: ready"):
                    self._ready.set()
                if line.startswith("data: ") and '"window_start"' in line:
                    point: dict[str, Any] = orjson.loads(line[6:])
                    windows[point["window_start"]] = int(point["count"])
                    self.seen.setdefault(sum(windows.values()), time.monotonic())


def event_to_screen(
    browser: Browser, gateway: str, collector: str, read_key: str, write_key: str, probes: int
) -> tuple[list[float], list[float]]:
    """(ms from ack to the page, ms from ack to the stream) for each probe event."""
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    context.add_init_script(f"localStorage.setItem('sextant.readKey', {read_key!r});")
    page = context.new_page()
    page.goto(f"{gateway}/#/metrics/{PROBE}")
    page.wait_for_selector("#headline[data-value]", timeout=60_000)
    _until(page, "() => document.querySelector('#live-status').textContent === 'live'", 60)
    watch = StreamWatch(gateway, read_key)
    on_page: list[float] = []
    on_stream: list[float] = []
    with httpx.Client(auth=(write_key, ""), timeout=30) as http:
        for i in range(probes):
            before = float(page.get_attribute("#headline", "data-value") or 0)
            response = http.post(
                f"{collector}/v1/track",
                json={"userId": f"probe-{i}", "event": "Bench Probe"},
            )
            response.raise_for_status()
            acked = time.monotonic()
            _until(
                page,
                f"() => Number(document.querySelector('#headline').dataset.value) >= {before + 1}",
                30,
            )
            on_page.append((time.monotonic() - acked) * 1000)
            deadline = time.monotonic() + 10
            while int(before + 1) not in watch.seen and time.monotonic() < deadline:
                time.sleep(0.01)
            if int(before + 1) in watch.seen:
                on_stream.append((watch.seen[int(before + 1)] - acked) * 1000)
            time.sleep(0.5)
    context.close()
    return on_page, on_stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", default="http://127.0.0.1:8081")
    parser.add_argument("--collector", default="http://127.0.0.1:8080")
    parser.add_argument("--project", default="demo")
    parser.add_argument("--read-key", default="sx_read_demo_00000000000000000")
    parser.add_argument("--write-key", default="sx_write_demo_0000000000000000")
    parser.add_argument("--admin-key", default="sx_admin_demo_0000000000000000")
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--probes", type=int, default=20)
    args = parser.parse_args()
    ensure_probe(args.gateway, args.admin_key, args.project)
    executable = shutil.which("chromium")
    if executable is None:
        raise SystemExit("Debian's chromium is needed (make setup installs it as root)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=ARGS)
        signin = [
            lcp(browser, args.gateway, "", "#/signin", "#read-key") for _ in range(args.loads)
        ]
        outcomes = [
            lcp(browser, args.gateway, args.read_key, "#/outcomes", "[data-outcome]")
            for _ in range(args.loads)
        ]
        metrics = [
            lcp(browser, args.gateway, args.read_key, "#/metrics/revenue", "#headline[data-value]")
            for _ in range(args.loads)
        ]
        on_page, on_stream = event_to_screen(
            browser, args.gateway, args.collector, args.read_key, args.write_key, args.probes
        )
        browser.close()
    figures = [
        Figure(
            "workspace",
            f"largest contentful paint, outcome board, p50 / p95 of {args.loads} cold loads "
            f"(p50 {statistics.median(outcomes):.0f} ms)",
            _percentile(outcomes, 0.95),
            "ms",
            "sign-in page (static), p95",
            _percentile(signin, 0.95),
            "< 1,500 ms",
            COMMAND,
        ),
        Figure(
            "workspace",
            f"largest contentful paint, metric explorer (revenue), p95 of {args.loads} cold loads "
            f"(p50 {statistics.median(metrics):.0f} ms)",
            _percentile(metrics, 0.95),
            "ms",
            "sign-in page (static), p95",
            _percentile(signin, 0.95),
            "< 1,500 ms",
            COMMAND,
        ),
        Figure(
            "workspace",
            f"event acknowledged to shown on the page, p95 of {len(on_page)} "
            f"(p50 {statistics.median(on_page):.0f} ms)",
            _percentile(on_page, 0.95),
            "ms",
            "same events on the live stream read directly, p95",
            _percentile(on_stream, 0.95) if on_stream else None,
            "< 2,000 ms",
            COMMAND,
        ),
    ]
    report("workspace", figures)


if __name__ == "__main__":
    main()

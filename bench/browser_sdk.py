"""What the browser SDK costs a page's main thread, measured in Chromium.

Two figures, each beside a baseline measured in the same page and run:

- the synchronous cost of ``sextant.track()`` per call (the script-tag bundle, a page served
  from a local static site): rounds of ``--calls`` calls timed with ``performance.now()``,
  the median round, beside a no-op function call (a function that stores its argument)
  timed the same way; the target is under 20 µs per call;
- the main thread's whole cost per event, deferred work included (persisting the queue to
  localStorage, building the batch, the ``fetch`` and its answer): Chromium's own
  ``TaskDuration`` (DevTools protocol, ``Performance.getMetrics``) over the calls and until
  every event was delivered to a local stand-in collector, divided by the number of events,
  beside the same measure of the no-op loop.

Run: ``python -m bench.browser_sdk [--calls N] [--rounds N]`` after ``make setup`` (it needs
Debian's chromium and ``sdk/js/dist``, built by setup).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from playwright.sync_api import CDPSession, Page, sync_playwright

from bench.common import Figure, write_results
from tests.browser.conftest import CHROMIUM_ARGS
from tests.browser.site import static_site

COMMAND = "python -m bench.browser_sdk"
BUNDLE = Path(__file__).parents[1] / "sdk" / "js" / "dist" / "sextant.min.js"

# Timed in the page: rounds of `calls` calls of `track` and of a no-op function, alternated
# so that drifting load on the machine hits both; each round waits for delivery first.
MEASURE_SYNC = """
async ({calls, rounds}) => {
  const props = {order_id: "o-1", revenue: 12.5, currency: "EUR", items: 3};
  let sink = null;
  const noop = function (name, properties) { sink = properties; return name; };
  const drain = async () => {
    while (sextant.stats().pending > 0) {
      await sextant.flush();
      await new Promise(r => setTimeout(r, 5));
    }
  };
  // performance.now() is coarsened (to 100 µs without cross-origin isolation): the no-op
  // runs 1,000 times as many calls per round to be measurable at all.
  const round = (fn, n) => {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) fn("Order Completed", props);
    return (performance.now() - t0) * 1000 / n;
  };
  for (let i = 0; i < 3; i++) {  // warm-up
    round(noop, calls * 1000);
    round(sextant.track, calls);
    await drain();
  }
  const track = [], base = [];
  for (let r = 0; r < rounds; r++) {
    base.push(round(noop, calls * 1000));
    track.push(round(sextant.track, calls));
    await drain();
  }
  return {track, base, sink: sink !== null, stats: sextant.stats()};
}
"""

RUN_TRACK = """
async (calls) => {
  const props = {order_id: "o-1", revenue: 12.5, currency: "EUR", items: 3};
  for (let i = 0; i < calls; i++) sextant.track("Order Completed", props);
  while (sextant.stats().pending > 0) {
    await sextant.flush();
    await new Promise(r => setTimeout(r, 5));
  }
}
"""

RUN_NOOP = """
async (calls) => {
  const props = {order_id: "o-1", revenue: 12.5, currency: "EUR", items: 3};
  let sink = null;
  const noop = function (name, properties) { sink = properties; return name; };
  for (let i = 0; i < calls; i++) noop("Order Completed", props);
  await new Promise(r => setTimeout(r, 5));
  return sink !== null;
}
"""


# The same events posted by hand, 20 per request, one request at a time (as the SDK sends
# them), with no queue, persistence or context: what sending the bytes costs by itself.
RUN_RAW_FETCH = """
async ({calls, host}) => {
  const props = {order_id: "o-1", revenue: 12.5, currency: "EUR", items: 3};
  const events = [];
  for (let i = 0; i < calls; i++) {
    events.push(JSON.stringify({type: "track", event: "Order Completed", properties: props,
      anonymousId: "a", messageId: crypto.randomUUID(), timestamp: new Date().toISOString(),
      context: {page: {path: location.pathname, url: location.href, title: document.title}}}));
  }
  for (let i = 0; i < events.length; i += 20) {
    const body = '{"batch":[' + events.slice(i, i + 20).join(",") + '],"writeKey":"wk_bench"}';
    const response = await fetch(host + "/v1/batch", {method: "POST", body, keepalive: true,
      headers: {"Content-Type": "text/plain"}, credentials: "omit"});
    await response.json();
  }
}
"""


class _Collector(BaseHTTPRequestHandler):
    """Accepts every batch at once (HTTP/1.1, CORS-open): only the page's own cost is measured."""

    protocol_version = "HTTP/1.1"
    events = 0

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        count = len(json.loads(body)["batch"])
        type(self).events += count
        answer = json.dumps({"accepted": count, "rejected": []}).encode()
        self.send_response(200)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


@contextmanager
def collector() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def task_seconds(cdp: CDPSession) -> float:
    metrics = cdp.send("Performance.getMetrics")["metrics"]
    return float(next(m["value"] for m in metrics if m["name"] == "TaskDuration"))


def main_thread_per_call(page: Page, cdp: CDPSession, script: str, calls: int, arg: Any) -> float:
    """Main-thread task time per call (µs), deferred work and delivery included."""
    before = task_seconds(cdp)
    page.evaluate(script, arg)
    return (task_seconds(cdp) - before) / calls * 1e6


def measure(calls: int, rounds: int) -> dict[str, Any]:
    if not BUNDLE.exists():
        raise SystemExit(f"{BUNDLE} is missing: run `make setup`")
    executable = shutil.which("chromium")
    if executable is None:
        raise SystemExit("Debian's chromium is missing: run `make setup` as root")
    with tempfile.TemporaryDirectory() as tmp, collector() as host:
        root = Path(tmp)
        shutil.copy(BUNDLE, root / BUNDLE.name)
        options = json.dumps({"host": host, "trackPages": False, "maxQueueSize": 100_000})
        (root / "index.html").write_text(
            f'<!doctype html><title>bench</title><script src="{BUNDLE.name}"></script>'
            f"<script>sextant.init('wk_bench', {options});</script>\n"
        )
        with static_site(root) as origin, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            try:
                page = browser.new_context().new_page()
                page.goto(f"{origin}/index.html")
                sync = page.evaluate(MEASURE_SYNC, {"calls": calls, "rounds": rounds})
                cdp = page.context.new_cdp_session(page)
                cdp.send("Performance.enable")
                whole_track, whole_noop, whole_raw = [], [], []
                raw = {"calls": calls, "host": host}
                for _ in range(3):
                    whole_noop.append(main_thread_per_call(page, cdp, RUN_NOOP, calls, calls))
                    whole_track.append(main_thread_per_call(page, cdp, RUN_TRACK, calls, calls))
                    whole_raw.append(main_thread_per_call(page, cdp, RUN_RAW_FETCH, calls, raw))
                version = browser.version
            finally:
                browser.close()
    return {
        "track": statistics.median(sync["track"]),
        "noop": statistics.median(sync["base"]),
        "whole_track": statistics.median(whole_track),
        "whole_noop": statistics.median(whole_noop),
        "whole_raw": statistics.median(whole_raw),
        "delivered": _Collector.events,
        "failed": sync["stats"]["failed"] + sync["stats"]["dropped"],
        "chromium": version,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="track() calls per round")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    result = measure(args.calls, args.rounds)
    load = os.getloadavg()[0]
    if result["failed"]:
        raise SystemExit(f"events were lost during the benchmark: {result}")
    print(json.dumps(result, indent=2))
    where = f"Chromium {result['chromium']}, headless, load average {load:.1f}"
    figures = [
        Figure(
            benchmark="browser_sdk",
            figure=(
                f"sextant.track(): main-thread time per call, synchronous part "
                f"(median of {args.rounds} rounds of {args.calls:,} calls; {where})"
            ),
            value=round(result["track"], 2),
            unit="µs",
            baseline="a no-op function call in the same page",
            baseline_value=round(result["noop"], 4),
            target="< 20 µs",
            command=COMMAND,
        ),
        Figure(
            benchmark="browser_sdk",
            figure=(
                "sextant.track(): main-thread task time per event, deferred work included "
                "(localStorage, batching, fetch and its answer; DevTools TaskDuration, "
                f"median of 3 runs of {args.calls:,} events delivered)"
            ),
            value=round(result["whole_track"], 2),
            unit="µs",
            baseline="the no-op loop measured the same way",
            baseline_value=round(result["whole_noop"], 4),
            command=COMMAND,
        ),
        Figure(
            benchmark="browser_sdk",
            figure=(
                "sextant.track(): main-thread task time per event, deferred work included "
                "(as above), beside the same events posted with plain fetch"
            ),
            value=round(result["whole_track"], 2),
            unit="µs",
            baseline="plain fetch of the same events, 20 per request, one at a time",
            baseline_value=round(result["whole_raw"], 2),
            command=COMMAND,
        ),
    ]
    print(f"wrote {write_results('browser_sdk', figures)}")


if __name__ == "__main__":
    main()

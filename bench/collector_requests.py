"""Browser-shaped requests: one collector worker under single-event requests, beside a bare
FastAPI endpoint, and posthog-js's gzip bodies beside the same events as JSON.

Browsers do not send batches of 100: analytics-next sends one event per request, posthog-js a
few every few seconds. In one run, on one broker, with ``wrk`` as the load (C, on loopback):

1. Single-event ``POST /v1/track`` requests: one collector worker (``sextant collector``,
   answering only once Kafka has the event) against the baseline, a bare FastAPI endpoint
   served by uvicorn the same way that only parses the same body and answers 200
   (``bench/bare_endpoint.py``). Rounds alternate baseline and collector; each reports
   requests/s and the server's CPU time per request; the median-ratio round is reported.
2. posthog-js's shape: batches of 5 events posted to ``/e/`` gzipped as ``text/plain`` with no
   header saying so (what posthog-js sends), beside the same batches as plain JSON: the
   collector's acknowledged events/s for each.

Run: ``python -m bench.collector_requests [--bootstrap HOST:PORT]`` (needs ``wrk``:
``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.collector_throughput import collector, cpu_seconds
from bench.common import Figure, publish_bench_project, report
from bench.common import bootstrap_server as broker
from sextant.core.kafka import ensure_topics
from sextant.core.settings import KafkaSection

NAME = "collector_requests"
WRITE_KEY = "wk_bench_secret"
POSTHOG_BATCH = 5
TRACK = {
    "userId": "user-1",
    "event": "Product Viewed",
    "properties": {"sku": "a-1", "price": 12.5, "currency": "EUR"},
    "context": {"library": {"name": "analytics.js", "version": "4.1.0"}},
}


@dataclass
class Load:
    requests_per_s: float
    cpu_us_per_request: float


def lua_string(data: bytes) -> str:
    return '"' + "".join(f"\\{byte}" for byte in data) + '"'


def wrk_script(folder: Path, name: str, body: bytes, content_type: str) -> Path:
    auth = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    path = folder / f"{name}.lua"
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {lua_string(body)}\n"
        f'wrk.headers["Content-Type"] = "{content_type}"\n'
        f'wrk.headers["Authorization"] = "Basic {auth}"\n'
        "done = function(summary, latency, requests)\n"
        "  local bad = summary.errors.status + summary.errors.connect + summary.errors.read\n"
        '  io.write(string.format("bad %d\\n", bad))\n'
        "end\n"
    )
    return path


def run_wrk(url: str, script: Path, pids: list[int], seconds: float, connections: int) -> Load:
    before = cpu_seconds(pids)
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    )
    cpu = cpu_seconds(pids) - before
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
    bad = int(re.search(r"bad (\d+)", done.stdout).group(1))  # type: ignore[union-attr]
    if bad:
        raise RuntimeError(f"{bad} requests were not answered 2xx:\n{done.stdout}")
    return Load(rate, cpu / (rate * seconds) * 1e6)


@contextlib.contextmanager
def bare_endpoint() -> Iterator[tuple[int, list[int]]]:
    from tests.infra import free_port, wait_for

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.bare_endpoint", str(port)])

    def up() -> bool:
        with (
            contextlib.suppress(OSError),
            __import__("socket").create_connection(("127.0.0.1", port), 0.5),
        ):
            return True
        return False

    try:
        wait_for(up, 30, 0.1, "bare endpoint up")
        yield port, [process.pid]
    finally:
        process.terminate()
        process.wait(timeout=30)


def posthog_bodies() -> tuple[bytes, bytes]:
    batch = [
        {
            "event": "$pageview",
            "distinct_id": "01934f6e-visitor",
            "uuid": str(uuid.uuid4()),
            "properties": {
                "$current_url": "https://shop.example.com/products/a-1",
                "$lib": "web",
                "$lib_version": "1.449.2",
                "$browser": "Chrome",
                "$screen_width": 1366,
                "$session_id": "01934f6e-session",
            },
        }
        for _ in range(POSTHOG_BATCH)
    ]
    plain = orjson.dumps({"api_key": WRITE_KEY, "batch": batch})
    return plain, gzip.compress(plain, mtime=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16, help="wrk's keep-alive connections")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("this benchmark needs wrk (apt-get install wrk)")

    single = orjson.dumps(TRACK)
    plain, zipped = posthog_bodies()
    with (
        broker(args.bootstrap) as bootstrap,
        tempfile.TemporaryDirectory() as tmp,
    ):
        folder = Path(tmp)
        settings = KafkaSection(kafka_bootstrap=bootstrap, topic_prefix=f"r{uuid.uuid4().hex[:8]}")
        ensure_topics(settings)
        publish_bench_project(settings, WRITE_KEY)
        track_script = wrk_script(folder, "track", single, "application/json")
        zipped_script = wrk_script(folder, "gzip", zipped, "text/plain")
        plain_script = wrk_script(folder, "plain", plain, "application/json")
        rounds: list[tuple[Load, Load]] = []
        shapes: list[tuple[Load, Load]] = []
        with collector(settings, 1) as (port, pids), bare_endpoint() as (bare_port, bare_pids):
            url, bare_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{bare_port}"
            run_wrk(f"{url}/v1/track", track_script, pids, 3, args.connections)  # warm up both
            run_wrk(f"{bare_url}/v1/track", track_script, bare_pids, 3, args.connections)
            for _ in range(args.rounds):
                baseline = run_wrk(
                    f"{bare_url}/v1/track", track_script, bare_pids, args.seconds, args.connections
                )
                measured = run_wrk(
                    f"{url}/v1/track", track_script, pids, args.seconds, args.connections
                )
                rounds.append((measured, baseline))
                print(
                    f"  single events: collector {measured.requests_per_s:,.0f}/s "
                    f"({measured.cpu_us_per_request:.0f} µs CPU) beside bare "
                    f"{baseline.requests_per_s:,.0f}/s ({baseline.cpu_us_per_request:.0f} µs)"
                )
                as_json = run_wrk(
                    f"{url}/batch/", plain_script, pids, args.seconds, args.connections
                )
                as_gzip = run_wrk(f"{url}/e/", zipped_script, pids, args.seconds, args.connections)
                shapes.append((as_gzip, as_json))
                print(
                    f"  posthog batches of {POSTHOG_BATCH}: gzip "
                    f"{as_gzip.requests_per_s * POSTHOG_BATCH:,.0f} events/s beside JSON "
                    f"{as_json.requests_per_s * POSTHOG_BATCH:,.0f}"
                )
    report_run(rounds, shapes, args)


def report_run(
    rounds: list[tuple[Load, Load]], shapes: list[tuple[Load, Load]], args: argparse.Namespace
) -> None:
    command = "python -m bench.collector_requests"
    ratios = [m.requests_per_s / b.requests_per_s for m, b in rounds]
    measured, baseline = sorted(rounds, key=lambda r: r[0].requests_per_s / r[1].requests_per_s)[
        len(rounds) // 2
    ]
    gzip_load, json_load = sorted(shapes, key=lambda s: s[0].requests_per_s / s[1].requests_per_s)[
        len(shapes) // 2
    ]
    load = os.getloadavg()[0]
    figures = [
        Figure(
            benchmark=NAME,
            figure=f"single-event requests/s, one collector worker, {args.connections} connections "
            f"(median-ratio round of {args.rounds}: " + ", ".join(f"{r:.2f}" for r in ratios) + ")",
            value=round(measured.requests_per_s),
            unit="requests/s",
            baseline="bare FastAPI/uvicorn endpoint parsing the same body, same run",
            baseline_value=round(baseline.requests_per_s),
            target=">= 0.6 of the baseline",
            command=command,
        ),
        Figure(
            benchmark=NAME,
            figure="server CPU per single-event request (same round)",
            value=round(measured.cpu_us_per_request),
            unit="µs",
            baseline="the bare endpoint's CPU per request",
            baseline_value=round(baseline.cpu_us_per_request),
            command=command,
        ),
        Figure(
            benchmark=NAME,
            figure=f"acknowledged events/s, posthog-js-style gzip bodies of {POSTHOG_BATCH} events "
            "to /e/ (text/plain, no header)",
            value=round(gzip_load.requests_per_s * POSTHOG_BATCH),
            unit="events/s",
            baseline="the same batches as plain JSON to /batch/",
            baseline_value=round(json_load.requests_per_s * POSTHOG_BATCH),
            command=command,
        ),
        Figure(
            benchmark=NAME,
            figure="machine load average (1 min) at the end of the run (shared machine)",
            value=round(load, 1),
            unit="runnable tasks",
            command=command,
        ),
    ]
    report(NAME, figures)


if __name__ == "__main__":
    main()

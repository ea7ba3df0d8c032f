"""How fast does the gateway answer the questions teams ask, on ten million events?

One embedded engine, one run. Loaded with ``numbers()`` inside the engine: ``--events``
events (default ten million) of ``--users`` users (default a million) over 30 days (a funnel
of five steps that users abandon along the way, page views, searches and logins; each event
with a plan, a country and, for orders, a revenue), one exposure per user to a two-variant
experiment, and a day of the processor's minute windows for a count metric (five breakdown
values, every window emitted twice so the newest version must win) and a unique-users metric
(sparse HyperLogLog registers). The tables are then merged (``OPTIMIZE … FINAL``), as a warehouse
that has been running a while is.

Each query runs through the gateway's own code (SQL building, the engine, assembling the
answer), ``--rounds`` times after one warm-up (five times as many for the millisecond-scale
series); figures are p50 and p95 latencies, and the
p50 of the CPU time the engine spent (the machine is shared; CPU time is what a quiet
machine's latency is made of, divided among its cores):

- a one-day minute series of the count metric (target: p95 under 50 ms), and of the
  unique-users metric;
- an hourly trend over 30 days with a breakdown by plan (target: p95 under 1 s);
- a five-step funnel over 30 days (target: p95 under 1 s);
- daily retention of two weeks of cohorts over 7 days (target: p95 under 1 s);
- the experiment results (three metrics, CUPED on a 14-day look-back: the default) on a
  million exposures and ten million events (target: under 1 s);
- the refresh of an experiment's quantile metric (p90 of order revenue over events, with the
  per-unit clustering), which the results read from a cache between refreshes.

Baseline, in the same run and engine: ``SELECT count() FROM events`` (the engine's floor
for one round trip).

Run: ``python -m bench.gateway_queries [--events N] [--users N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import Figure, write_results
from sextant.core.config_plane import ConfigFollower
from sextant.core.migrations import migrate
from sextant.core.warehouse import Warehouse, connect
from sextant.gateway import experiments, insights
from sextant.gateway.context import Gateway
from sextant.gateway.series import Interval, metric_series
from sextant.gateway.settings import GatewaySettings
from sextant.schemas.config import (
    Experiment,
    FilterOp,
    MetricDefinition,
    MetricKind,
    PropertyFilter,
    Variant,
)

COMMAND = "python -m bench.gateway_queries"
PROJECT = "bench"
START = datetime(2025, 1, 1, tzinfo=UTC)
DAYS = 30
STEPS = ["Product Viewed", "Added to Cart", "Checkout Started", "Payment Info", "Order Completed"]
OTHERS = ["Page Viewed", "Search", "Login"]
PLANS = ["free", "starter", "pro", "team", "enterprise"]
SERIES_DAY = START + timedelta(days=10)


def load_events(warehouse: Warehouse, events: int, users: int) -> None:
    """``events`` events: event ``k`` of user ``u`` is number ``k * users + u``."""
    warehouse.command(
        f"""
        INSERT INTO events (project_id, event, timestamp, distinct_id, message_id, type, user_id,
                            properties, received_at)
        SELECT '{PROJECT}', name, ts, uid, toString(number), 'track', uid, props, ts
        FROM (
            SELECT number,
                   number % {users} AS u,
                   intDiv(number, {users}) AS k,
                   concat('user-', toString(u)) AS uid,
                   toDateTime64('{START:%Y-%m-%d %H:%M:%S}', 3, 'UTC')
                     + toIntervalSecond(cityHash64(u) % {DAYS * 86400}
                       + k * (300 + cityHash64(number) % 172800)) AS ts,
                   if(k < 5 AND cityHash64(u, k) % 100 < 90 - 15 * k,
                      {STEPS}[k + 1],
                      {OTHERS}[1 + cityHash64(number, 7) % 3]) AS name,
                   CAST(concat('{{"plan":"', {PLANS}[1 + cityHash64(u, 1) % 5],
                               '","country":"C', toString(cityHash64(u, 2) % 20),
                               '","revenue":', toString(if(name = 'Order Completed',
                                   round((cityHash64(number, 3) % 20000) / 100, 2), 0)),
                               '}}'), 'JSON') AS props
            FROM numbers({events})
        )
        """
    )


def load_exposures(warehouse: Warehouse, users: int) -> None:
    warehouse.command(
        f"""
        INSERT INTO exposures (project_id, experiment, unit_id, variation_id, timestamp,
                               message_id, multi_variant)
        SELECT '{PROJECT}', 'checkout', concat('user-', toString(number)),
               if(cityHash64(number, 9) % 2 = 0, 'control', 'one-page'),
               toDateTime64('{START:%Y-%m-%d %H:%M:%S}', 3, 'UTC')
                 + toIntervalSecond(cityHash64(number) % {DAYS * 86400}) - toIntervalSecond(60),
               concat('x-', toString(number)), false
        FROM numbers({users})
        """
    )


def load_points(warehouse: Warehouse) -> None:
    """A day of minute windows around SERIES_DAY: five breakdown values, two versions each,
    and a unique-users metric with sparse registers."""
    day = f"{SERIES_DAY:%Y-%m-%d %H:%M:%S}"
    warehouse.command(
        f"""
        INSERT INTO metric_points (project_id, metric, window_start, window_seconds, breakdown,
                                   count, sum, sum_sq, denominator, hll, digest, version,
                                   emitted_at)
        SELECT '{PROJECT}', 'orders',
               toDateTime64('{day}', 3, 'UTC') + toIntervalMinute(intDiv(number, 10)),
               60, {PLANS}[1 + number % 5], 10 + number % 7 + intDiv(number % 10, 5), 0, 0, 0,
               [], [], 1 + intDiv(number % 10, 5), now64(3)
        FROM numbers(1440 * 10)
        """
    )
    warehouse.command(
        f"""
        INSERT INTO metric_points (project_id, metric, window_start, window_seconds, breakdown,
                                   count, sum, sum_sq, denominator, hll, digest, version,
                                   emitted_at)
        SELECT '{PROJECT}', 'visitors',
               toDateTime64('{day}', 3, 'UTC') + toIntervalMinute(number), 60, '', 50, 0, 0, 0,
               arrayMap(i -> toUInt32(bitOr(bitShiftLeft(i, 6), 1 + cityHash64(i, number) % 6)),
                        arraySort(arrayDistinct(arrayMap(j -> cityHash64(number, j) % 65536,
                                                         range(55))))),
               [], 1, now64(3)
        FROM numbers(1440)
        """
    )


def timed(run: Callable[[], Any], rounds: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU seconds of each round. The engine runs in this process, so its CPU
    time is this process's: a figure the other tenants of a shared machine barely move."""
    run()  # warm-up: caches and the first compilation of each query shape
    walls, cpus = [], []
    for _ in range(rounds):
        started, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


def p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def gateway_over(url: str) -> Gateway:
    settings = GatewaySettings(clickhouse_url=url, query_timeout_seconds=60)
    return Gateway(settings, ConfigFollower(settings))  # the follower is never started


def queries(gateway: Gateway) -> dict[str, tuple[Callable[[], Any], str]]:
    orders = MetricDefinition(
        id="orders",
        project_id=PROJECT,
        metric_kind=MetricKind.COUNT,
        event="Order Completed",
        breakdown="plan",
    )
    visitors = MetricDefinition(
        id="visitors", project_id=PROJECT, metric_kind=MetricKind.UNIQUE_USERS, event="Page Viewed"
    )
    day_end = SERIES_DAY + timedelta(days=1)
    month = {"from": START.isoformat(), "to": (START + timedelta(days=DAYS)).isoformat()}
    trend = insights.TrendsQuery.model_validate(
        {
            "event": "Page Viewed",
            "interval": "hour",
            "breakdown": "plan",
            "filters": [{"property": "country", "op": "neq", "value": "C3"}],
        }
        | month
    )
    funnel = insights.FunnelQuery.model_validate(
        {"steps": [{"event": s} for s in STEPS], "window_seconds": 7 * 86400} | month
    )
    retention = insights.RetentionQuery.model_validate(
        {
            "cohort_event": "Product Viewed",
            "return_event": "Login",
            "period": "day",
            "periods": 7,
            "from": START.isoformat(),
            "to": (START + timedelta(days=14)).isoformat(),
        }
    )
    metrics = {
        m.id: m
        for m in (
            MetricDefinition(
                id="checkout",
                project_id=PROJECT,
                metric_kind=MetricKind.CONVERSION,
                event="Added to Cart",
                conversion_event="Order Completed",
                conversion_window_seconds=7 * 86400,
            ),
            MetricDefinition(
                id="revenue",
                project_id=PROJECT,
                metric_kind=MetricKind.SUM,
                event="Order Completed",
                property="revenue",
                filters=[PropertyFilter(property="revenue", op=FilterOp.GT, value=0)],
            ),
            MetricDefinition(
                id="views", project_id=PROJECT, metric_kind=MetricKind.COUNT, event="Page Viewed"
            ),
        )
    }
    experiment = Experiment(
        id="checkout",
        project_id=PROJECT,
        primary_metric="checkout",
        guardrail_metrics=["revenue", "views"],
        variants=[Variant(id="control", weight=0.5), Variant(id="one-page", weight=0.5)],
    )
    order_p90 = MetricDefinition(
        id="order-value-p90",
        project_id=PROJECT,
        metric_kind=MetricKind.PERCENTILES,
        event="Order Completed",
        property="revenue",
        quantile=0.9,
    )
    halves = {"control": 500_000, "one-page": 500_000}
    return {
        "one-day minute series (count, 5 breakdown values)": (
            lambda: metric_series(
                gateway, PROJECT, orders, SERIES_DAY, day_end, Interval.MINUTE, False
            ),
            "p95 < 50 ms",
        ),
        "one-day minute series (unique users, HyperLogLog)": (
            lambda: metric_series(
                gateway, PROJECT, visitors, SERIES_DAY, day_end, Interval.MINUTE, False
            ),
            "",
        ),
        "30-day hourly trend, filter and breakdown by plan": (
            lambda: insights.trends(gateway, PROJECT, trend),
            "p95 < 1 s",
        ),
        "30-day five-step funnel": (lambda: insights.funnel(gateway, PROJECT, funnel), "p95 < 1 s"),
        "daily retention, 14 cohorts x 7 days": (
            lambda: insights.retention(gateway, PROJECT, retention),
            "p95 < 1 s",
        ),
        "experiment results (3 metrics)": (
            lambda: experiments.experiment_results(gateway, PROJECT, experiment, metrics),
            "< 1 s",
        ),
        "experiment quantile refresh (p90, events)": (
            lambda: experiments.compute_quantiles(gateway, PROJECT, experiment, order_p90, halves),
            "",
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sextant-bench-") as folder:
        url = f"chdb://{folder}?database=b{uuid.uuid4().hex[:8]}"
        warehouse = connect(url)
        migrate(warehouse)
        started = time.perf_counter()
        load_events(warehouse, args.events, args.users)
        load_exposures(warehouse, args.users)
        load_points(warehouse)
        for table in ("events", "exposures", "metric_points"):
            warehouse.command(f"OPTIMIZE TABLE {table} FINAL")
        loaded = warehouse.query_rows("SELECT count() FROM events")[0][0]
        print(f"loaded {loaded:,} events in {time.perf_counter() - started:.0f} s")

        baseline, _ = timed(lambda: warehouse.query_rows("SELECT count() FROM events"), args.rounds)
        gateway = gateway_over(url)
        figures: list[Figure] = []
        for name, (run, target) in queries(gateway).items():
            # Series take milliseconds: more rounds make their tail figures stable.
            samples, cpus = timed(run, args.rounds * (5 if "series" in name else 1))
            measured = [
                ("p50", p(samples, 0.5), ""),
                ("p95", p(samples, 0.95), target),
                ("CPU p50", p(cpus, 0.5), ""),
            ]
            for label, seconds, goal in measured:
                figures.append(
                    Figure(
                        benchmark="gateway_queries",
                        figure=f"{name}: {label} ({loaded / 1e6:.0f}M events)",
                        value=round(seconds * 1000, 1),
                        unit="ms",
                        baseline="SELECT count() FROM events, p50",
                        baseline_value=round(statistics.median(baseline) * 1000, 2),
                        target=goal,
                        command=COMMAND,
                    )
                )
            print(
                f"{name}: p50 {p(samples, 0.5) * 1000:.1f} ms, p95 {p(samples, 0.95) * 1000:.1f}"
                f" ms, CPU p50 {p(cpus, 0.5) * 1000:.1f} ms"
            )
        print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"baseline SELECT count(): p50 {statistics.median(baseline) * 1000:.2f} ms")
    print(write_results("gateway_queries", figures))


if __name__ == "__main__":
    main()

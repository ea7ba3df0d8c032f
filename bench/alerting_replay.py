"""How fast the metric-rule evaluator replays ``metric_points`` at start-up.

A restart of the processor replays up to ``replay_hours`` of points silently to rebuild rule
states (docs/decisions/alerting-evaluation.md), so its rate bounds how long a restart takes
before alerts flow again. Figure: points per second through JSON decoding plus the
:class:`MetricAlertEngine` (windows closing on the watermark, every rule judged), one rule per
metric, threshold, relative change (trailing) and anomaly in turn. Baseline: decoding the same
records alone (``MetricPoint.model_validate_json``), the floor any consumer pays. Kafka is not
involved: its fetch rate is measured by the processor and sink benchmarks.

Run: ``python -m bench.alerting_replay [--metrics N] [--minutes M] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from bench.common import Figure, write_results
from sextant.core.config_plane import ConfigState
from sextant.processor.alerting import MetricAlertEngine
from sextant.schemas.config import AlertRule, ConfigDocument, MetricDefinition, Project
from sextant.schemas.records import MetricPoint

COMMAND = "python -m bench.alerting_replay"
T0 = datetime(2026, 3, 2, tzinfo=UTC)
RULES: list[dict[str, Any]] = [
    {"rule_kind": "threshold", "direction": "below", "threshold": 0.05},
    {"rule_kind": "relative_change", "baseline": "trailing", "change_percent": 30},
    {"rule_kind": "anomaly", "direction": "either", "pending_windows": 3},
]


def config(metrics: int) -> ConfigState:
    state = ConfigState()
    documents: list[ConfigDocument] = [Project(id="shop", project_id="shop", name="Shop")]
    for i in range(metrics):
        documents.append(
            MetricDefinition(
                id=f"m{i}",
                project_id="shop",
                metric_kind="conversion",
                event="A",
                conversion_event="B",
            )
        )
        fields = {"id": f"r{i}", "project_id": "shop", "metric": f"m{i}"} | RULES[i % 3]
        documents.append(AlertRule.model_validate(fields))
    for document in documents:
        state.apply(document.config_key(), document)
    return state


def records(metrics: int, minutes: int) -> list[bytes]:
    rng = np.random.default_rng(1)
    out = []
    for minute in range(minutes):
        start = T0 + timedelta(minutes=minute)
        for i in range(metrics):
            users = int(rng.poisson(1000))
            point = MetricPoint(
                project_id="shop",
                metric=f"m{i}",
                window_start=start,
                count=int(rng.binomial(users, 0.1)),
                denominator=users,
                emitted_at=start + timedelta(minutes=1),
            )
            out.append(point.model_dump_json().encode())
    return out


def replay(state: ConfigState, values: list[bytes], batch: int = 500) -> float:
    engine = MetricAlertEngine(state, {}, silent=True)
    started = time.perf_counter()
    for offset in range(0, len(values), batch):
        for value in values[offset : offset + batch]:
            engine.observe(MetricPoint.model_validate_json(value), 0)
        engine.close_windows()
    engine.finish_catch_up()
    return time.perf_counter() - started


def decode_only(values: list[bytes]) -> float:
    started = time.perf_counter()
    for value in values:
        MetricPoint.model_validate_json(value)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", type=int, default=20)
    parser.add_argument("--minutes", type=int, default=1440)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    state = config(args.metrics)
    values = records(args.metrics, args.minutes)
    engine_s = min(replay(state, values) for _ in range(args.rounds))
    decode_s = min(decode_only(values) for _ in range(args.rounds))
    n = len(values)
    figure = Figure(
        benchmark="alerting_replay",
        figure=f"start-up replay, {args.metrics} metrics x {args.minutes} minutes, 1 rule each",
        value=n / engine_s,
        unit="points/s",
        baseline="decoding the points alone",
        baseline_value=n / decode_s,
        command=COMMAND,
    )
    path = write_results("alerting_replay", [figure])
    print(
        f"{n} points: replay {n / engine_s:,.0f} points/s, decode alone {n / decode_s:,.0f}"
        f" points/s ({figure.ratio:.2f} of it); {path}"
    )


if __name__ == "__main__":
    main()

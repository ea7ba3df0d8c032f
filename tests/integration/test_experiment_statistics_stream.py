"""Streamed experiment statistics through the real parts: events on a real broker, the
processor as a process (killed with SIGKILL mid-stream and restarted), the sink writing the
embedded engine, the gateway's results endpoint answering from the stream, equal to its own
recomputation from the events table to 1e-9 relative."""

from __future__ import annotations

import contextlib
import math
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from sextant.core.settings import KafkaSection
from sextant.schemas.config import Experiment, MetricDefinition, MetricKind, Variant
from sextant.schemas.events import EXPERIMENT_VIEWED
from sextant.schemas.experiment_stream import statistics_fingerprint
from sextant.schemas.statistics import (
    STATISTICS_COLUMNS,
    ExperimentMetricStatistics,
    SufficientStatistics,
)
from sextant.sink.service import SinkService
from sextant.sink.settings import SinkSettings
from tests.infra import wait_for
from tests.integration.persons_support import insert_override
from tests.integration.test_gateway_harness import Harness, make_harness
from tests.integration.test_processor_pipeline import ProcessorProcess, Sender

UNITS = 240
METRICS = [
    MetricDefinition(id="revenue", project_id="acme", metric_kind=MetricKind.SUM,
                     event="Purchase", property="amount"),
    MetricDefinition(id="purchases", project_id="acme", metric_kind=MetricKind.COUNT,
                     event="Purchase"),
    MetricDefinition(id="buyers", project_id="acme", metric_kind=MetricKind.UNIQUE_USERS,
                     event="Purchase"),
    MetricDefinition(id="basket", project_id="acme", metric_kind=MetricKind.MEAN,
                     event="Purchase", property="amount"),
    MetricDefinition(id="per_visit", project_id="acme", metric_kind=MetricKind.SUM,
                     event="Purchase", property="amount", denominator_metric="visits"),
    MetricDefinition(id="visits", project_id="acme", metric_kind=MetricKind.COUNT,
                     event="Visit"),
]  # fmt: skip
IGNORED = {"computed_at", "source", "as_of", "source_note"}


@pytest.fixture
def harness(kafka_bootstrap: str, warehouse_root: Path) -> Iterator[Harness]:
    with make_harness(kafka_bootstrap, warehouse_root) as made:
        yield made


@contextlib.contextmanager
def sink(harness: Harness) -> Iterator[None]:
    service = SinkService(
        SinkSettings(
            kafka_bootstrap=harness.settings.kafka_bootstrap,
            topic_prefix=harness.settings.topic_prefix,
            clickhouse_url=harness.settings.clickhouse_url,
            sink_batch_seconds=0.2,
        )
    )
    service.start()
    try:
        yield
    finally:
        service.stop()


def unit_events(
    rng: random.Random, unit: int, now: datetime
) -> list[tuple[str, datetime, dict[str, Any]]]:
    """A unit's events: some in the day before its exposure (the covariate), the exposure,
    some after; a few units see both variants."""
    exposed = now - timedelta(minutes=rng.uniform(5, 50))
    variant = "control" if unit % 2 else "treatment"
    lift = 1.0 if variant == "control" else 1.3
    events: list[tuple[str, datetime, dict[str, Any]]] = []
    base = rng.lognormvariate(2, 0.6)
    for _ in range(rng.randint(0, 3)):
        at = exposed - timedelta(hours=rng.uniform(0.1, 30))
        events.append(("Purchase", at, {"amount": round(base * rng.uniform(0.5, 1.5), 2)}))
    events.append((EXPERIMENT_VIEWED, exposed, {"experiment_id": "exp", "variation_id": variant}))
    for _ in range(rng.randint(0, 4)):
        at = exposed + timedelta(minutes=rng.uniform(0.01, 4))
        name = rng.choice(["Purchase", "Purchase", "Visit"])
        events.append((name, at, {"amount": round(base * lift * rng.uniform(0.5, 1.5), 2)}))
    if unit % 37 == 0:
        other = "treatment" if variant == "control" else "control"
        events.append((EXPERIMENT_VIEWED, exposed + timedelta(seconds=5),
                       {"experiment_id": "exp", "variation_id": other}))  # fmt: skip
    return events


def assert_equal(stream: Any, warehouse: Any, path: str = "") -> None:
    if isinstance(stream, dict):
        assert set(stream) == set(warehouse), path
        for key in stream:
            if key not in IGNORED:
                assert_equal(stream[key], warehouse[key], f"{path}.{key}")
    elif isinstance(stream, list):
        assert len(stream) == len(warehouse), path
        for i, (a, b) in enumerate(zip(stream, warehouse, strict=True)):
            assert_equal(a, b, f"{path}[{i}]")
    elif isinstance(stream, float) and isinstance(warehouse, float):
        assert math.isclose(stream, warehouse, rel_tol=1e-9, abs_tol=1e-12), (
            path,
            stream,
            warehouse,
        )
    else:
        assert stream == warehouse, (path, stream, warehouse)


def test_streamed_results_equal_the_recomputation_after_a_kill(
    harness: Harness, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    experiment = Experiment(
        id="exp", project_id="acme", variants=[Variant(id="control", weight=0.5),
        Variant(id="treatment", weight=0.5)], primary_metric="revenue",
        guardrail_metrics=["purchases", "buyers", "basket", "per_visit"],
        cuped_lookback_days=1, start=now - timedelta(hours=2),
    )  # fmt: skip
    harness.put_config(*METRICS, experiment)
    kafka = KafkaSection(
        kafka_bootstrap=harness.settings.kafka_bootstrap, topic_prefix=harness.settings.topic_prefix
    )
    sender = Sender(kafka, harness.warehouse)
    rng = random.Random(5)
    units = [(u, unit_events(rng, u, now)) for u in range(UNITS)]

    def burst(part: list[tuple[int, list[Any]]], pause_s: float = 0) -> None:
        for unit, events in part:
            for name, at, properties in events:
                sender.send("acme", name, f"user{unit}", at, store=False, **properties)
            if pause_s:
                sender.producer.flush()
                time.sleep(pause_s)  # pacing the load, not waiting for a result
        sender.producer.flush()

    first = ProcessorProcess(kafka, tmp_path, "a").start()
    try:
        with sink(harness):
            first.wait_ready()
            burst(units[:80])
            killer = threading.Timer(0.5, first.stop, kwargs={"kill": True})
            killer.start()
            burst(units[80:160], pause_s=0.01)  # the kill lands in the middle of this
            killer.join()
            first = ProcessorProcess(kafka, tmp_path, "a2").start()
            first.wait_ready()
            burst(units[160:])
            path = "/v1/experiments/exp/results"
            differences: list[str] = []

            def agree() -> bool:
                stream = harness.client.get(path, headers=harness.read).json()
                warehouse = harness.client.get(
                    path, params={"source": "warehouse"}, headers=harness.read
                ).json()
                try:
                    assert stream.get("source") == "stream", stream.get("source_note")
                    # Both can agree before every exposure has landed: wait for all units.
                    units = sum(v["units"] for v in stream["variants"])
                    assert units == UNITS - stream["multi_variant_units"], f"{units} units"
                    assert_equal(stream, warehouse)
                except AssertionError as difference:
                    differences[:] = [str(difference)]
                    return False
                return True

            wait_for(agree, 120, 0.5, f"streamed results equal the recomputation {differences}")
            answer = harness.client.get(path, headers=harness.read).json()
            assert answer["source"] == "stream"
            assert (
                sum(v["units"] for v in answer["variants"]) == UNITS - answer["multi_variant_units"]
            )
            revenue = answer["metrics"][0]
            assert revenue["method"]["variance_reduction"] == "cuped"
            assert revenue["variants"][0]["units_with_pre"] > 0
    finally:
        first.stop()


def define(harness: Harness, experiment: str) -> tuple[datetime, str]:
    """An experiment of variants ``a`` and ``b`` on ``purchases`` with a two-day look-back:
    its start and its statistics' fingerprint."""
    start = datetime(2026, 1, 10, tzinfo=UTC)
    defined = Experiment(
        id=experiment, project_id="acme", variants=[Variant(id="a", weight=0.5),
        Variant(id="b", weight=0.5)], primary_metric="purchases", cuped_lookback_days=2,
        start=start,
    )  # fmt: skip
    harness.put_config(*METRICS, defined)
    return start, statistics_fingerprint(defined, {m.id: m for m in METRICS})


def write_statistics(
    harness: Harness,
    experiment: str,
    partitions: int,
    fingerprint: str,
    tracked_after: datetime | None,
    version: int,
) -> None:
    """Records of ``partitions`` of two, as the processor writes them: five units a variant
    per partition, and ``purchases`` sums."""
    rows = []
    for partition in range(partitions):
        for metric in ("", "purchases"):
            sums = {"sum_x": 7.0, "sum_x_sq": 11.0} if metric else {}
            for variant in ("a", "b"):
                record = ExperimentMetricStatistics(
                    project_id="acme", experiment=experiment, metric=metric, variant=variant,
                    lookback_days=2, statistics=SufficientStatistics(n=5, **sums),
                    as_of=datetime.now(UTC), source_partition=partition, partitions=2,
                    version=version, fingerprint=fingerprint, tracked_after=tracked_after,
                )  # fmt: skip
                rows.append(orjson.dumps(record.to_row()))
    harness.warehouse.insert_json("experiment_statistics", b"\n".join(rows), STATISTICS_COLUMNS)


def results(harness: Harness, experiment: str) -> dict[str, Any]:
    found: dict[str, Any] = harness.client.get(
        f"/v1/experiments/{experiment}/results", headers=harness.read
    ).json()
    return found


def test_the_warehouse_answers_when_the_stream_does_not_cover_the_experiment(
    harness: Harness,
) -> None:
    start, fingerprint = define(harness, "cov")
    written = 0

    def write(partitions: int, fingerprint: str, tracked_after: datetime | None) -> None:
        nonlocal written
        write_statistics(harness, "cov", partitions, fingerprint, tracked_after, written)
        written += 1

    def answer() -> dict[str, Any]:
        return results(harness, "cov")

    assert answer()["source_note"] == "no streamed statistics yet"
    write(1, fingerprint, None)
    assert "1 of 2 partitions" in answer()["source_note"]
    write(2, "older", None)
    assert "earlier definition" in answer()["source_note"]
    write(2, fingerprint, start - timedelta(days=1))
    assert answer()["source"] == "warehouse"
    assert "began after" in answer()["source_note"]
    write(2, fingerprint, start - timedelta(days=3))
    streamed = answer()
    assert streamed["source"] == "stream"
    assert [v["units"] for v in streamed["variants"]] == [10, 10]
    assert streamed["metrics"][0]["variants"][0]["mean"] == pytest.approx(14 / 10)


def test_the_warehouse_answers_once_an_exposed_unit_has_other_ids(harness: Harness) -> None:
    """The stream counts ids, the events table persons: the stream answers while no unit
    exposed to the experiment belongs to a person of several ids, whatever other persons
    the project has."""
    start, fingerprint = define(harness, "ids")
    write_statistics(harness, "ids", 2, fingerprint, start - timedelta(days=3), 0)
    for unit in ("user-1", "user-2", "anon-9"):
        harness.warehouse.insert(
            "exposures",
            [["acme", "ids", unit, "a", start + timedelta(hours=1), f"m-{unit}", False]],
            ["project_id", "experiment", "unit_id", "variation_id", "timestamp", "message_id",
             "multi_variant"],
        )  # fmt: skip
    assert results(harness, "ids")["source"] == "stream"

    # A person of two ids, neither of them exposed: the stream still answers.
    insert_override(harness.warehouse, "anon-1", "user-7", 1)
    assert results(harness, "ids")["source"] == "stream"

    # An exposed unit is the id a person is named by.
    insert_override(harness.warehouse, "anon-2", "user-2", 2)
    answer = results(harness, "ids")
    assert answer["source"] == "warehouse"
    assert "other ids" in answer["source_note"]

    # Split again (each id its own person): the stream answers again.
    insert_override(harness.warehouse, "anon-2", "anon-2", 3)
    assert results(harness, "ids")["source"] == "stream"

    # An exposed unit joined to another id's person.
    insert_override(harness.warehouse, "anon-9", "user-8", 4)
    assert results(harness, "ids")["source"] == "warehouse"

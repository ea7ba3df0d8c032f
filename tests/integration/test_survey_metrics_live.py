"""NPS and CSAT metrics as live windows through the real parts: survey answers on a real
broker, the processor as a process, the sink writing the embedded engine, and the gateway's
series (in total and per breakdown value) and live stream equal to its own answer from the
events table, to the backfill's windows and to a direct computation over the answers."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from sextant.core.metric_history import window_groups
from sextant.core.settings import KafkaSection
from sextant.gateway.event_metrics import metric_values
from sextant.gateway.series import Interval
from sextant.schemas.config import MetricDefinition, MetricKind, PropertyFilter
from tests.infra import wait_for
from tests.integration.test_experiment_statistics_stream import sink
from tests.integration.test_gateway_harness import Harness, make_harness
from tests.integration.test_processor_pipeline import ProcessorProcess, Sender

SURVEY = "Survey Responded"
PLANS = ("free", "pro", "team")
NPS = MetricDefinition(
    id="nps",
    project_id="acme",
    metric_kind=MetricKind.NPS,
    event=SURVEY,
    property="score",
    filters=[PropertyFilter(property="survey", op="eq", value="nps")],
    breakdown="plan",
)
CSAT = MetricDefinition(
    id="csat",
    project_id="acme",
    metric_kind=MetricKind.CSAT,
    event=SURVEY,
    property="score",
    filters=[PropertyFilter(property="survey", op="eq", value="csat")],
    satisfied_from=4,
)
NOT_SCORES: list[Any] = ["9", "n/a", True, None]
"""Not JSON numbers: skipped by every reader, as a mean skips them."""

Key = tuple[datetime, str]
"""(minute, breakdown value)."""


@dataclass
class Answered:
    harness: Harness
    start: datetime
    end: datetime
    values: dict[str, dict[Key, list[float]]]
    """Per metric, (minute, plan) → the response values, computed here from the scores."""

    def expected(self, metric: str, by_plan: bool = False) -> dict[Key, float]:
        merged: dict[Key, list[float]] = {}
        for (minute, plan), values in self.values[metric].items():
            merged.setdefault((minute, plan if by_plan else ""), []).extend(values)
        return {key: sum(v) / len(v) for key, v in merged.items()}

    def series(self, metric: str, **params: Any) -> dict[Key, dict[str, Any]]:
        range_ = {"from": self.start.isoformat(), "to": self.end.isoformat()}
        response = self.harness.client.get(
            f"/v1/metrics/{metric}/series", params=range_ | params, headers=self.harness.read
        )
        assert response.status_code == 200, response.text
        return {
            (datetime.fromisoformat(p["t"]), s["breakdown"] or ""): p
            for s in response.json()["series"]
            for p in s["points"]
            if p["count"]
        }


def _value(metric: str, score: float) -> float:
    if metric == "nps":
        return 100.0 if score >= 9 else -100.0 if score <= 6 else 0.0
    return 1.0 if score >= 4 else 0.0


def _send_answers(sender: Sender, now: datetime) -> dict[str, dict[Key, list[float]]]:
    rng = random.Random(24)
    choices: dict[str, list[Any]] = {
        "nps": [*range(11), *range(7, 11), 7.5, 11, -1, *NOT_SCORES],
        "csat": [1, 2, 3, 4, 5, 5, 3.5, *NOT_SCORES],
    }
    values: dict[str, dict[Key, list[float]]] = {"nps": {}, "csat": {}}
    for i in range(360):
        survey = "nps" if i % 3 else "csat"
        plan = rng.choice(PLANS)
        score = rng.choice(choices[survey])
        at = now - timedelta(seconds=rng.uniform(5, 170))
        properties: dict[str, Any] = {"survey": survey, "plan": plan}
        if i % 29:
            properties["score"] = score
        sent = sender.send("acme", SURVEY, f"u{i}", at, **properties)
        if "score" in properties and type(score) in (int, float):
            minute = sent.timestamp.replace(second=0, microsecond=0)
            key = (minute, plan if survey == "nps" else "")
            values[survey].setdefault(key, []).append(_value(survey, score))
    sender.send("acme", SURVEY, "other", now, survey="onboarding", score=0, plan="pro")
    sender.flush()
    return values


@pytest.fixture(scope="module")
def answered(
    kafka_bootstrap: str, warehouse_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Answered]:
    with make_harness(kafka_bootstrap, warehouse_root, live_heartbeat_seconds=0.5) as harness:
        harness.put_config(NPS, CSAT)
        kafka = KafkaSection(
            kafka_bootstrap=harness.settings.kafka_bootstrap,
            topic_prefix=harness.settings.topic_prefix,
        )
        processor = ProcessorProcess(kafka, tmp_path_factory.mktemp("processor")).start()
        try:
            with sink(harness):
                processor.wait_ready()
                now = datetime.now(UTC)
                values = _send_answers(Sender(kafka, harness.warehouse), now)
                answered = Answered(
                    harness,
                    now.replace(second=0, microsecond=0) - timedelta(minutes=4),
                    now.replace(second=0, microsecond=0) + timedelta(minutes=1),
                    values,
                )
                _wait_for_windows(answered)
                yield answered
        finally:
            processor.stop()


def _wait_for_windows(answered: Answered) -> None:
    """Until the warehouse holds every response in the newest version of its window."""

    def complete() -> bool:
        for metric in ("nps", "csat"):
            counts = {k: p["count"] for k, p in answered.series(metric, breakdown=True).items()}
            wanted = {k: len(v) for k, v in answered.values[metric].items()}
            if counts != wanted:
                return False
        return True

    wait_for(complete, 120, 0.5, "every answer in the live windows")


def test_live_nps_equals_the_warehouse_answer_and_the_direct_score(answered: Answered) -> None:
    gateway = answered.harness.app.state.gateway
    for interval in (Interval.MINUTE, Interval.HOUR):
        live = answered.series("nps", interval=interval.value)
        warehouse = metric_values(gateway, "acme", NPS, answered.start, answered.end, interval)
        from_events = {(t, ""): v for t, v in warehouse if v is not None}
        assert set(live) == set(from_events)
        for key, point in live.items():
            assert point["value"] == pytest.approx(from_events[key])
        if interval is Interval.MINUTE:
            assert set(live) == set(answered.expected("nps"))
            for key, value in answered.expected("nps").items():
                assert live[key]["value"] == pytest.approx(value)
                assert -100 <= value <= 100


def test_nps_per_breakdown_value(answered: Answered) -> None:
    live = answered.series("nps", breakdown="true")
    expected = answered.expected("nps", by_plan=True)
    assert set(live) == set(expected)
    for key, value in expected.items():
        assert live[key]["value"] == pytest.approx(value)
        assert live[key]["count"] == len(answered.values["nps"][key])


def test_live_csat_is_the_satisfied_share(answered: Answered) -> None:
    gateway = answered.harness.app.state.gateway
    live = answered.series("csat")
    warehouse = metric_values(gateway, "acme", CSAT, answered.start, answered.end, Interval.MINUTE)
    from_events = {(t, ""): v for t, v in warehouse if v is not None}
    expected = answered.expected("csat")
    assert set(live) == set(from_events) == set(expected)
    for key, value in expected.items():
        assert live[key]["value"] == pytest.approx(value)
        assert from_events[key] == pytest.approx(value)
        assert live[key]["sum"] == pytest.approx(value * live[key]["count"])


def test_the_backfill_computes_the_same_windows(answered: Answered) -> None:
    rows = answered.harness.warehouse.query_rows(
        "SELECT window_start, breakdown, count, sum, sum_sq FROM metric_points_latest"
        " WHERE project_id = 'acme' AND metric = 'nps' AND count > 0"
    )
    live = {(int(r[0].replace(tzinfo=UTC).timestamp()), r[1]): (r[2], r[3], r[4]) for r in rows}
    windows = window_groups(answered.harness.warehouse, NPS, answered.start, answered.end)
    backfilled = {
        (start, name): (g.count, g.total, g.total_sq)
        for start, groups in windows.items()
        for name, g in groups.items()
    }
    assert backfilled == live


def test_the_live_stream_carries_the_scores(answered: Answered) -> None:
    """Replayed from the topic's start, the newest version of each window is its score."""
    h = answered.harness
    start = ",".join(f"{p}:0" for p in range(3))
    newest: dict[Key, tuple[int, float]] = {}
    headers = h.read | {"Last-Event-ID": start}
    with h.client.stream("GET", "/v1/metrics/nps/live", headers=headers) as response:
        assert response.status_code == 200
        deadline = time.monotonic() + 30
        event = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "point":
                data = orjson.loads(line.removeprefix("data: "))
                key = (datetime.fromisoformat(data["window_start"]), data["breakdown"] or "")
                if data["count"] and newest.get(key, (-1, 0.0))[0] < data["version"]:
                    newest[key] = (data["version"], data["value"])
            if event == "heartbeat" or time.monotonic() > deadline:
                break
    expected = answered.expected("nps", by_plan=True)
    assert {k: v for k, (_, v) in newest.items()} == pytest.approx(expected)

"""Persons through every part: anonymous visitors exposed to an experiment, half of whom sign
up and then buy as known users, counted as one unit each by the experiment's results, unique
users, trends and funnels; with the identify call before the purchases, after them (late),
and sent as posthog-js sends it; the guards; and a kill -9 of the resolver under load.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from scipy import stats

from bench.soak import Part
from sextant.core.config_plane import ConfigPublisher
from sextant.core.kafka import ensure_topics
from sextant.core.settings import KafkaSection
from sextant.schemas.assignment import assign
from sextant.schemas.config import (
    ApiKey,
    Experiment,
    FilterOp,
    KeyKind,
    MetricDefinition,
    Project,
    PropertyFilter,
    Variant,
    hash_key,
)
from tests.infra import free_port, wait_for

WRITE, READ = "sx_write_persons_e2e_0000000000", "sx_read_persons_e2e_00000000000"
ADMIN = "sx_admin_persons_e2e_0000000000"
VISITORS = 1_000
SEXTANT = str(Path(sys.executable).with_name("sextant"))
CONVERTING = {"control": 3, "treatment": 5}
"""Of every ten visitors of a variant who sign up, this many buy."""
Event = dict[str, Any]


def _experiment(key: str, unit: str) -> Experiment:
    return Experiment(
        id=key,
        project_id="shop",
        unit=unit,  # type: ignore[arg-type]
        variants=[Variant(id="control", weight=0.5), Variant(id="treatment", weight=0.5)],
        seed=f"{key}-seed",
        primary_metric="orders",
    )


EXPERIMENTS = {
    "early": _experiment("early", "anonymousId"),
    "late": _experiment("late", "anonymousId"),
    "posthog": _experiment("posthog", "userId"),
}


def _publish(kafka: KafkaSection) -> None:
    publisher = ConfigPublisher(kafka)
    publisher.put(
        [
            Project(id="shop", project_id="shop", name="Shop", identity_junk_ids=["nobody"]),
            ApiKey(id="w", project_id="shop", key_kind=KeyKind.WRITE, key_hash=hash_key(WRITE)),
            ApiKey(id="r", project_id="shop", key_kind=KeyKind.READ, key_hash=hash_key(READ)),
            ApiKey(id="a", project_id="*", key_kind=KeyKind.ADMIN, key_hash=hash_key(ADMIN)),
            MetricDefinition(id="orders", project_id="shop", metric_kind="count", event="Order"),
            *(
                MetricDefinition(
                    id=f"{run}_visitors",
                    project_id="shop",
                    metric_kind="unique_users",
                    event="Page Viewed",
                    filters=[PropertyFilter(property="run", op=FilterOp.EQ, value=run)],
                )
                for run in EXPERIMENTS
            ),
            *EXPERIMENTS.values(),
        ]
    )
    publisher.close()


@pytest.fixture(scope="module")
def parts(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Part]]:
    """The collector, the processor and the gateway (with its sink), for this module's tests
    (the last one kills the processor)."""
    kafka = KafkaSection(kafka_bootstrap=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}")
    ensure_topics(kafka, partitions=3)
    _publish(kafka)
    tmp_path = tmp_path_factory.mktemp("persons")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEXTANT_")} | {
        "SEXTANT_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap,
        "SEXTANT_TOPIC_PREFIX": kafka.topic_prefix,
        "SEXTANT_CLICKHOUSE_URL": f"chdb://{tmp_path / 'warehouse'}",
        "SEXTANT_PROCESSOR_DATA_DIR": str(tmp_path / "processor"),
        # The live windows counted again by person between squash rounds (the first round
        # runs at start, the next after the test), within the test's time.
        "SEXTANT_SINK_PERSON_SQUASH_INTERVAL_SECONDS": "3600",
        "SEXTANT_SINK_PERSON_RECOUNT_INTERVAL_SECONDS": "5",
    }
    found = {
        name: Part(
            name,
            [SEXTANT, name],
            env | {f"SEXTANT_{name.upper()}_PORT": str(port)},
            tmp_path / f"{name}.log",
            f"http://127.0.0.1:{port}/readyz",
        )
        for name, port in (
            ("collector", free_port()),
            ("processor", free_port()),
            ("gateway", free_port()),
        )
    }
    for part in found.values():
        part.start()
    try:
        for part in found.values():
            wait_for(part.ready, 120, 0.25, f"{part.name} ready")
        yield found
    finally:
        for part in found.values():
            part.stop()


def _url(part: Part) -> str:
    return part.ready_url.removesuffix("/readyz")


# --- the visitors ---------------------------------------------------------------------------


class Visitors:
    """Per experiment: every visitor's variant, who signed up, who bought."""

    def __init__(self, experiment: Experiment, prefix: str) -> None:
        self.experiment = experiment
        self.anon = [f"{prefix}-anon-{i}" for i in range(VISITORS)]
        self.user = [f"{prefix}-user-{i}" for i in range(VISITORS)]
        self.variant = []
        for anon in self.anon:
            index = assign(experiment.id, anon, [0.5, 0.5], seed=experiment.seed)
            assert index is not None
            self.variant.append(experiment.variants[index].id)
        self.signs_up = [i % 2 == 0 for i in range(VISITORS)]
        self.buys = [s and (i // 2) % 10 < CONVERTING[v] for i, (s, v) in self._each()]

    def _each(self) -> Iterator[tuple[int, tuple[bool, str]]]:
        return enumerate(zip(self.signs_up, self.variant, strict=True))

    def expected(self) -> dict[str, np.ndarray]:
        """Each variant's units' values (orders per unit)."""
        return {
            v: np.array([float(b) for b, u in zip(self.buys, self.variant, strict=True) if u == v])
            for v in ("control", "treatment")
        }


def _segment(visitors: Visitors, start: datetime, late: bool) -> list[Event]:
    """Segment calls: exposure and a page view while anonymous; identify; then a page view
    and the purchase with only the userId (before the identify call when ``late``)."""
    before: list[Event] = []
    identifies: list[Event] = []
    for i, anon in enumerate(visitors.anon):
        at = start + timedelta(milliseconds=i)
        exp = visitors.experiment
        variation = visitors.variant[i]
        seen = {"experiment_id": exp.id, "variation_id": variation}
        before += [
            _track("Experiment Viewed", at, anonymousId=anon, properties=seen),
            _track("Page Viewed", at, anonymousId=anon, properties={"run": exp.id}),
        ]
        if not visitors.signs_up[i]:
            continue
        user = visitors.user[i]
        identifies.append(
            {
                "type": "identify",
                "userId": user,
                "anonymousId": anon,
                "traits": {"plan": "pro"},
                "timestamp": (at + timedelta(seconds=1)).isoformat(),
            }
        )
        later = at + timedelta(seconds=2)
        before.append(_track("Page Viewed", later, userId=user, properties={"run": exp.id}))
        if visitors.buys[i]:
            before.append(_track("Order", later + timedelta(seconds=1), userId=user))
    return before + identifies if late else identifies + before


def _track(name: str, at: datetime, **fields: Any) -> Event:
    return {"type": "track", "event": name, "timestamp": at.isoformat(), **fields}


def _posthog(visitors: Visitors, start: datetime) -> list[Event]:
    """posthog-js: anonymous events under the device's distinct_id, then ``$identify``."""
    events: list[Event] = []
    for i, anon in enumerate(visitors.anon):
        at = start + timedelta(milliseconds=i)
        seen = {"experiment_id": "posthog", "variation_id": visitors.variant[i]}
        events += [
            _ph("Experiment Viewed", anon, at, seen),
            _ph("Page Viewed", anon, at, {"run": "posthog"}),
        ]
        if not visitors.signs_up[i]:
            continue
        user = visitors.user[i]
        identify = {"$anon_distinct_id": anon, "$set": {"plan": "pro"}}
        later = at + timedelta(seconds=2)
        events += [
            _ph("$identify", user, at + timedelta(seconds=1), identify),
            _ph("Page Viewed", user, later, {"run": "posthog"}),
        ]
        if visitors.buys[i]:
            events.append(_ph("Order", user, later + timedelta(seconds=1), {}))
    return events


def _ph(name: str, distinct_id: str, at: datetime, properties: dict[str, Any]) -> Event:
    return {
        "event": name,
        "distinct_id": distinct_id,
        "timestamp": at.isoformat(),
        "properties": properties,
    }


def _send(collector: str, events: list[Event], path: str = "/v1/batch") -> None:
    for chunk in range(0, len(events), 500):
        batch = events[chunk : chunk + 500]
        body: dict[str, Any] = {"batch": batch}
        if path == "/batch/":
            body["api_key"] = WRITE
        response = httpx.post(f"{collector}{path}", json=body, auth=(WRITE, ""), timeout=30)
        assert response.status_code == 200, response.text


# --- reading --------------------------------------------------------------------------------


def _get(gateway: str, path: str) -> Any:
    response = httpx.get(
        f"{gateway}{path}", headers={"Authorization": f"Bearer {READ}"}, timeout=60
    )
    assert response.status_code == 200, response.text
    return response.json()


def _post(gateway: str, path: str, body: dict[str, Any], key: str = READ) -> Any:
    response = httpx.post(
        f"{gateway}{path}", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )
    assert response.status_code in (200, 202), response.text
    return response.json()


def _results_when(gateway: str, visitors: Visitors) -> Callable[[], Any]:
    """Results once every unit is in and every purchase is counted for its unit."""
    expected = visitors.expected()

    def ready() -> Any:
        body = _get(gateway, f"/v1/experiments/{visitors.experiment.id}/results")
        units = {v["id"]: v["units"] for v in body["variants"]}
        [primary] = [m for m in body["metrics"] if m["role"] == "primary"]
        means = {v["variant"]: v["mean"] for v in primary["variants"]}
        wanted = {v: float(values.mean()) for v, values in expected.items()}
        complete = units == {v: len(x) for v, x in expected.items()}
        return body if complete and means == pytest.approx(wanted, rel=1e-12) else None

    return ready


def _assert_results(body: Any, visitors: Visitors) -> None:
    """The comparison equals scipy's Welch test over the generated units."""
    expected = visitors.expected()
    [primary] = [m for m in body["metrics"] if m["role"] == "primary"]
    [comparison] = primary["comparisons"]
    welch = stats.ttest_ind(expected["treatment"], expected["control"], equal_var=False)
    difference = expected["treatment"].mean() - expected["control"].mean()
    assert comparison["absolute"]["estimate"] == pytest.approx(difference, rel=1e-9)
    assert comparison["absolute"]["p_value"] == pytest.approx(welch.pvalue, rel=1e-6)
    low, high = welch.confidence_interval(0.95)
    assert comparison["absolute"]["ci"]["low"] == pytest.approx(low, rel=1e-6)
    assert comparison["absolute"]["ci"]["high"] == pytest.approx(high, rel=1e-6)
    assert body["multi_variant_units"] == 0
    # The processor's streamed statistics count ids; the events table, which counts persons,
    # answers (for this project's merged persons, or its anonymousId units) and says why.
    assert body["source"] == "warehouse"
    assert body["source_note"]


def _unique_users(gateway: str, run: str, start: datetime) -> int:
    body = _post(
        gateway,
        "/v1/insights/trends",
        {
            "event": "Page Viewed",
            "measure": "unique_users",
            "interval": "day",
            "from": (start - timedelta(hours=1)).isoformat(),
            "to": (start + timedelta(hours=1)).isoformat(),
            "filters": [{"property": "run", "op": "eq", "value": run}],
        },
    )
    [series] = body["series"]
    return int(series["total"])


def _live_visitors(gateway: str, run: str, minute: datetime) -> int:
    """Unique users of ``run``'s live windows (``/v1/metrics``) in ``minute``."""
    to = (minute + timedelta(minutes=1)).isoformat()
    query = httpx.QueryParams({"from": minute.isoformat(), "to": to, "interval": "minute"})
    body = _get(gateway, f"/v1/metrics/{run}_visitors/series?{query}")
    [series] = body["series"]
    [point] = series["points"]
    return int(point["value"] or 0)


def _near(estimate: int, expected: int) -> bool:
    """A HyperLogLog estimate within 1 % (its standard error here is about 0.3 %)."""
    return abs(estimate - expected) <= expected / 100


def _funnel_buyers(gateway: str, run: str, start: datetime) -> int:
    body = _post(
        gateway,
        "/v1/insights/funnels",
        {
            "steps": [
                {
                    "event": "Page Viewed",
                    "filters": [{"property": "run", "op": "eq", "value": run}],
                },
                {"event": "Order"},
            ],
            "window_seconds": 3600,
            "from": (start - timedelta(hours=1)).isoformat(),
            "to": (start + timedelta(hours=1)).isoformat(),
        },
    )
    [group] = body["groups"]
    return int(group["steps"][1]["users"])


def _check_scenario(gateway: str, visitors: Visitors, run: str, start: datetime) -> None:
    """Results, the unique-users trend, the funnel and (once their minute has closed, at the
    sink's next recount, with no squash round) the live windows count persons."""
    results = wait_for(_results_when(gateway, visitors), 180, 1.0, f"{run}: every conversion")
    _assert_results(results, visitors)
    users = wait_for(
        lambda: (n := _unique_users(gateway, run, start)) == VISITORS and n,
        60,
        0.5,
        f"{run}: {VISITORS} persons",
    )
    assert users == VISITORS  # not 1,500: a visitor who signed up is one person
    assert _funnel_buyers(gateway, run, start) == sum(visitors.buys)
    minute = start.replace(second=0, microsecond=0)
    wait_for(
        lambda: _near(_live_visitors(gateway, run, minute), VISITORS), 240, 1.0, f"{run}: live"
    )


# --- the tests ------------------------------------------------------------------------------


def test_persons_count_once_across_anonymous_and_known_ids(parts: dict[str, Part]) -> None:
    collector, gateway = _url(parts["collector"]), _url(parts["gateway"])
    # Every event within one minute, a few seconds after its start.
    minute = (datetime.now(UTC) - timedelta(minutes=5)).replace(second=0, microsecond=0)
    start = minute + timedelta(seconds=10)
    early = Visitors(EXPERIMENTS["early"], "early")
    late = Visitors(EXPERIMENTS["late"], "late")
    posthog = Visitors(EXPERIMENTS["posthog"], "ph")
    _send(collector, _segment(early, start, late=False))
    _send(collector, _posthog(posthog, start), path="/batch/")
    late_events = _segment(late, start, late=True)
    identifies = [e for e in late_events if e["type"] == "identify"]
    _send(collector, [e for e in late_events if e["type"] != "identify"])

    _check_scenario(gateway, early, "early", start)
    _check_scenario(gateway, posthog, "posthog", start)
    # Before the late identify calls, a visitor who signed up is two users.
    two_each = VISITORS + sum(late.signs_up)
    wait_for(lambda: _unique_users(gateway, "late", start) == two_each, 60, 0.5, "ids apart")
    # The live windows count ids (the minute counted again by person before the identify
    # calls gives the same): two each too.
    wait_for(lambda: _near(_live_visitors(gateway, "late", minute), two_each), 60, 0.5, "ids")
    _send(collector, identifies)
    _check_scenario(gateway, late, "late", start)

    person = _get(gateway, f"/v1/persons/{early.anon[0]}")
    assert person["person_id"] == early.user[0]
    assert person["distinct_ids"] == sorted([early.anon[0], early.user[0]])
    assert person["properties"] == {"plan": "pro"}
    [merge] = person["merges"]
    assert (merge["decision"], merge["kind"], merge["moved"]) == (
        "merged",
        "identify",
        [early.anon[0]],
    )
    page = _get(gateway, f"/v1/persons/{early.user[0]}/events?limit=2")
    assert len(page["items"]) == 2
    rest = _get(gateway, f"/v1/persons/{early.user[0]}/events?cursor={page['next_cursor']}")
    ids = {e["distinct_id"] for e in page["items"] + rest["items"]}
    assert ids == {early.anon[0], early.user[0]}
    assert _get(gateway, f"/v1/persons/{posthog.anon[0]}")["person_id"] == posthog.user[0]


def test_the_guards(parts: dict[str, Part]) -> None:
    collector, gateway = _url(parts["collector"]), _url(parts["gateway"])
    at = datetime.now(UTC).isoformat()

    def identify(anon: str, user: str) -> Event:
        return {"type": "identify", "userId": user, "anonymousId": anon, "timestamp": at}

    _send(
        collector,
        [
            identify("shared-device", "ann"),
            identify("shared-device", "bob"),  # two known users sharing a device
            identify("undefined", "carl"),
            identify("nobody", "carl"),  # the project's own junk id
            identify("d1", "dora"),
            identify("e1", "emil"),
            {"type": "alias", "previousId": "emil", "userId": "dora", "timestamp": at},
        ],
    )
    _send(
        collector,
        [_ph("$merge_dangerously", "dora", datetime.now(UTC), {"alias": "emil"})],
        path="/batch/",
    )

    def person_of(distinct_id: str) -> Any:
        response = httpx.get(
            f"{gateway}/v1/persons/{distinct_id}",
            headers={"Authorization": f"Bearer {READ}"},
            timeout=30,
        )
        return response.json() if response.status_code == 200 else None

    def merged() -> Any:
        dora = person_of("emil")
        return dora if dora and dora["person_id"] == "dora" else None

    dora = wait_for(merged, 120, 0.5, "$merge_dangerously merges two known users")
    assert dora["distinct_ids"] == ["d1", "dora", "e1", "emil"]
    reasons = [(m["kind"], m["decision"]) for m in dora["merges"]]
    assert ("alias", "refused") in reasons  # both identified: alias alone does not merge
    assert ("merge", "merged") in reasons
    assert person_of("bob")["distinct_ids"] == ["bob"]
    assert person_of("ann")["distinct_ids"] == ["ann", "shared-device"]
    carl = person_of("carl")
    assert carl["distinct_ids"] == ["carl"]
    assert [m["reason"] for m in carl["merges"]] == ["junk id", "junk id"]

    _post(gateway, "/v1/admin/projects/shop/persons/dora/split", {}, key=ADMIN)
    split = wait_for(
        lambda: (p := person_of("emil")) and p["person_id"] == "emil" and p, 60, 0.5, "split"
    )
    assert split["distinct_ids"] == ["emil"]
    assert person_of("d1")["distinct_ids"] == ["d1"]


def test_kill_9_of_the_resolver_under_load_loses_and_repeats_no_edge(
    parts: dict[str, Part],
) -> None:
    """Visitors sign up while the processor is killed with SIGKILL twice and started again:
    afterwards every visitor is one person, merged once."""
    collector, gateway = _url(parts["collector"]), _url(parts["gateway"])
    processor = parts["processor"]
    start = datetime.now(UTC) - timedelta(minutes=1)
    allowed = threading.Condition()
    allowance = [5]
    """Batches the sender may send so far: a few around each kill keeps the test short."""
    batches: list[int] = []
    failures: list[BaseException] = []

    def send_batch(first: int) -> None:
        events: list[Event] = []
        for i in range(first, first + 100):
            at = start + timedelta(milliseconds=i)
            anon, user = f"k-anon-{i}", f"k-user-{i}"
            page = {"run": "kill"}
            events += [
                _track("Page Viewed", at, anonymousId=anon, properties=page),
                {"type": "identify", "userId": user, "anonymousId": anon},
                _track("Page Viewed", at, userId=user, properties=page),
            ]
        _send(collector, events)
        batches.append(first)

    def load() -> None:
        try:
            while True:
                with allowed:
                    allowed.wait_for(lambda: len(batches) < allowance[0] or allowance[0] == 0)
                    if allowance[0] == 0:
                        return
                send_batch(len(batches) * 100)
        except BaseException as error:  # noqa: BLE001 - reported by the test's thread
            failures.append(error)

    def allow(more: int) -> None:
        with allowed:
            allowance[0] = allowance[0] + more if more else 0
            allowed.notify_all()

    sender = threading.Thread(target=load)
    sender.start()
    try:
        for _ in range(2):
            sent = len(batches)
            wait_for(lambda sent=sent: len(batches) >= sent + 3, 60, 0.05, "edges flowing")
            processor.kill9()
            processor.start()
            wait_for(processor.ready, 120, 0.25, "processor ready again")
            allow(5)
        wait_for(lambda: len(batches) == allowance[0], 60, 0.05, "edges after the restarts")
    finally:
        allow(0)
        sender.join()
    assert not failures, failures
    visitors = len(batches) * 100
    wait_for(
        lambda: _unique_users(gateway, "kill", start) == visitors,
        180,
        1.0,
        f"{visitors} persons after the kills",
    )
    for i in random.Random(7).sample(range(visitors), 20):
        person = _get(gateway, f"/v1/persons/k-anon-{i}")
        assert person["person_id"] == f"k-user-{i}"
        assert [m["decision"] for m in person["merges"]] == ["merged"]

"""Safe rollouts without infrastructure: ramps on an injected clock, a guardrail that switches
a rule off (and stops its ramp), holdouts, namespaces, and versions that restore exactly."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from sextant.core.config_plane import ConfigState
from sextant.core.feature_versions import revisions, versioned
from sextant.gateway.rollouts import SEXTANT, RampService, stop_on_alerts
from sextant.schemas.config import (
    AlertRule,
    AlertRuleKind,
    ConfigDocument,
    Experiment,
    Feature,
    FeatureRevision,
    NamespaceRange,
    Variant,
)
from sextant.schemas.experiments import variant_of
from sextant.schemas.features import features_payload
from sextant.schemas.flags import evaluate
from sextant.schemas.records import AlertState, AlertTransition
from sextant.sdk import Client

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def put(state: ConfigState, documents: Sequence[ConfigDocument]) -> None:
    for document in documents:
        state.apply(document.config_key(), document)


def feature(rules: list[dict[str, Any]], **extra: Any) -> Feature:
    return Feature.model_validate(
        {
            "id": "checkout",
            "project_id": "shop",
            "value_type": "string",
            "default_value": "classic",
            "environments": {"production": {"rules": rules}},
        }
        | extra
    )


EXPERIMENT = Experiment(
    id="checkout-test",
    project_id="shop",
    start=T0 - HOUR,
    variants=[Variant(id="control", weight=0.5), Variant(id="one-page", weight=0.5)],
)
GUARD = AlertRule(
    id="checkout-guard",
    project_id="shop",
    rule_kind=AlertRuleKind.EXPERIMENT_GUARDRAIL,
    experiment="checkout-test",
)
RAMP = [
    {"at": (T0 + HOUR).isoformat(), "coverage": 0.25},
    {"at": (T0 + 2 * HOUR).isoformat(), "coverage": 0.5},
    {"at": (T0 + 3 * HOUR).isoformat(), "coverage": 1.0},
]


def stage(state: ConfigState, *documents: ConfigDocument, now: datetime = T0) -> None:
    put(state, versioned(state, list(documents), by="ops", now=now))


def coverage(state: ConfigState) -> float | None:
    current = state.get("feature:shop:checkout")
    assert isinstance(current, Feature)
    rule = current.environments["production"].rules[0]
    return getattr(rule, "coverage", None)


def firing(at: datetime) -> AlertTransition:
    return AlertTransition(
        transition_id=f"t-{at.isoformat()}",
        project_id="shop",
        rule_id="checkout-guard",
        episode_id="e1",
        from_state=AlertState.PENDING,
        to_state=AlertState.FIRING,
        at=at,
        message="guardrail 'errors' is worse by 12% (always-valid interval 4% to 20%).",
    )


def test_a_ramp_raises_coverage_on_schedule_and_stops_when_a_guardrail_fires() -> None:
    state = ConfigState()
    put(state, [EXPERIMENT, GUARD])
    rule = {
        "type": "experiment",
        "id": "test",
        "experiment": "checkout-test",
        "values": {"control": "classic", "one-page": "one-page"},
        "coverage": 0.05,
        "ramp": RAMP,
    }
    stage(state, feature([rule]))
    now = [T0]
    ramps = RampService(state, lambda docs: put(state, docs), set, clock=lambda: now[0])

    assert ramps.tick() == []
    assert coverage(state) == 0.05
    now[0] = T0 + HOUR
    assert [notes for _, notes in ramps.tick()] == [["production: rule 'test' 5% → 25%"]]
    assert coverage(state) == 0.25
    assert ramps.tick() == [], "once per step"
    now[0] = T0 + 2 * HOUR + timedelta(minutes=1)
    ramps.tick()
    assert coverage(state) == 0.5

    published = stop_on_alerts(
        state,
        [firing(T0 + 2 * HOUR + timedelta(minutes=5))],
        lambda docs: put(state, docs),
        T0 + 2 * HOUR,
    )
    assert "Sextant switched off rule 'test' of feature 'checkout' in production (version 4)" in (
        published[0].message
    )
    current = state.get("feature:shop:checkout")
    assert isinstance(current, Feature)
    stopped = current.environments["production"].rules[0]
    assert stopped.enabled is False
    assert "checkout-guard" in stopped.stopped_reason
    payload = features_payload([current], [EXPERIMENT], "production", T0 + 2 * HOUR)
    assert payload["features"]["checkout"] == {"defaultValue": "classic"}

    now[0] = T0 + 4 * HOUR
    assert ramps.tick() == [], "a rule a guardrail switched off is never raised again"
    assert coverage(state) == 0.5
    history = revisions(state, "shop", "checkout")
    assert [(r.version, r.by) for r in history] == [
        (1, "ops"),
        (2, SEXTANT),
        (3, SEXTANT),
        (4, SEXTANT),
    ]
    assert history[3].comment == "guardrail: alert rule 'checkout-guard' fired"
    assert history[3].changes[0].startswith("production: rule 'test' enabled True → False")


def test_a_ramp_waits_while_its_experiment_is_firing() -> None:
    state = ConfigState()
    put(state, [EXPERIMENT])
    rule = {
        "type": "experiment",
        "id": "test",
        "experiment": "checkout-test",
        "coverage": 0.05,
        "auto_stop": False,
        "ramp": RAMP,
    }
    stage(state, feature([rule]))
    ramps = RampService(
        state,
        lambda docs: put(state, docs),
        lambda: {("shop", "checkout-test")},
        clock=lambda: T0 + 5 * HOUR,
    )
    assert ramps.tick() == []
    assert coverage(state) == 0.05


def test_a_plain_rollout_ramps_too() -> None:
    state = ConfigState()
    rule = {"type": "rollout", "id": "pct", "value": "one-page", "coverage": 0.05, "ramp": RAMP}
    stage(state, feature([rule]))
    ramps = RampService(state, lambda docs: put(state, docs), set, clock=lambda: T0 + 3 * HOUR)
    ramps.tick()
    assert coverage(state) == 1.0


def test_a_revert_restores_the_previous_version_exactly() -> None:
    state = ConfigState()
    first = feature(
        [{"type": "force", "id": "fr", "condition": {"country": "FR"}, "value": "one-page"}],
        description="v1",
    )
    stage(state, first)
    stage(state, feature([], description="v2"), now=T0 + HOUR)
    v1 = state.get("feature_revision:shop:checkout@1")
    assert isinstance(v1, FeatureRevision)
    assert v1.document is not None
    stage(state, v1.document, now=T0 + 2 * HOUR)
    current = state.get("feature:shop:checkout")
    assert isinstance(current, Feature)
    assert current.version == 3
    assert current.content() == v1.document.content()
    assert current.created_at == v1.document.created_at
    restored = features_payload([current], [], "production", T0)
    original = features_payload([v1.document], [], "production", T0)
    assert restored["features"] == original["features"]
    assert restored["dateUpdated"] > original["dateUpdated"], "a new version: a new date"


HOLDOUT = Experiment(
    id="global-holdout",
    project_id="shop",
    holdout=True,
    start=T0,
    variants=[Variant(id="holdout", weight=0.1), Variant(id="general", weight=0.9)],
)


def test_holdout_units_see_no_new_feature_and_are_exposed_to_the_holdout() -> None:
    old = feature(
        [{"type": "force", "id": "all", "value": "one-page"}], id="old", created_at=T0 - HOUR
    )
    new = feature(
        [{"type": "force", "id": "all", "value": "one-page"}], id="new", created_at=T0 + HOUR
    )
    payload = features_payload([old, new], [HOLDOUT], "production", T0 + 2 * HOUR)["features"]
    held = general = 0
    for i in range(5000):
        unit = f"unit-{i}-ü"
        in_holdout = variant_of(HOLDOUT, unit, T0 + HOUR)
        assert in_holdout is not None
        result = evaluate(payload, "new", {"id": unit})
        assert evaluate(payload, "old", {"id": unit}).value == "one-page", "older features stay"
        [exposure] = result.exposures
        assert exposure.experiment_key == "global-holdout"
        assert exposure.key == in_holdout.id
        if in_holdout.id == "holdout":
            held += 1
            assert result.value == "classic"
        else:
            general += 1
            assert result.value == "one-page"
    assert 400 < held < 600
    assert general + held == 5000


def test_two_experiments_in_one_namespace_never_share_a_unit() -> None:
    a = EXPERIMENT.model_copy(
        update={"id": "a", "namespace": NamespaceRange(id="ns", start=0, end=0.4)}
    )
    b = EXPERIMENT.model_copy(
        update={"id": "b", "namespace": NamespaceRange(id="ns", start=0.4, end=1)}
    )

    def rules(experiment: str) -> list[dict[str, Any]]:
        values = {"control": "c", "one-page": "o"}
        return [{"type": "experiment", "id": "x", "experiment": experiment, "values": values}]

    features = [feature(rules("a"), id="fa"), feature(rules("b"), id="fb")]
    payload = features_payload(features, [a, b], "production", T0)["features"]
    counts = {"a": 0, "b": 0}
    for i in range(10_000):
        attrs = {"id": f"u{i}"}
        in_a = evaluate(payload, "fa", attrs).experiment is not None
        in_b = evaluate(payload, "fb", attrs).experiment is not None
        assert not (in_a and in_b)
        assert in_a == (variant_of(a, f"u{i}", T0) is not None)
        counts["a"] += in_a
        counts["b"] += in_b
    assert 3600 < counts["a"] < 4400
    assert 5600 < counts["b"] < 6400


def test_the_sdk_logs_one_exposure_per_unit_and_experiment() -> None:
    payload = features_payload(
        [feature([{"type": "force", "id": "all", "value": "one-page"}], created_at=T0 + HOUR)],
        [HOLDOUT],
        "production",
        T0 + 2 * HOUR,
    )
    sent: list[dict[str, Any]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/features/"):
            return httpx.Response(200, content=orjson.dumps(payload))
        batch = orjson.loads(request.read())["batch"]
        sent.extend(batch)
        return httpx.Response(200, json={"accepted": len(batch), "rejected": []})

    with Client(
        "wk",
        host="http://c.test",
        client_key="sdk-x",
        streaming=False,
        gzip=False,
        transport=httpx.MockTransport(handle),
    ) as client:
        for _ in range(3):
            for unit in ("u1", "u2"):
                client.get_feature_value("checkout", "?", unit)
        client.flush(5)
    exposures = [e for e in sent if e["event"] == "Experiment Viewed"]
    assert sorted(e["userId"] for e in exposures) == ["u1", "u2"]
    assert {e["properties"]["experiment_id"] for e in exposures} == {"global-holdout"}

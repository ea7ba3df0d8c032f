"""The processor's view of the config plane follows every change at once."""

from __future__ import annotations

from sextant.core.config_plane import ConfigState
from sextant.processor.catalog import DEFAULT_LATENESS_SECONDS, ConfigCatalog
from sextant.schemas.config import Experiment, MetricDefinition, Project, Variant


def _metric(event: str = "A", **extra: object) -> MetricDefinition:
    return MetricDefinition.model_validate(
        {"id": "m", "project_id": "p", "metric_kind": "count", "event": event, **extra}
    )


def test_definitions_created_changed_and_deleted_take_effect_immediately() -> None:
    state = ConfigState()
    catalog = ConfigCatalog(state)
    assert catalog.metrics_for("p", "A") == []
    state.apply("metric:p:m", _metric("A"))
    assert [m.key for m in catalog.metrics_for("p", "A")] == ["m"]
    state.apply("metric:p:m", _metric("B"))
    assert catalog.metrics_for("p", "A") == []
    assert [m.key for m in catalog.metrics_for("p", "B")] == ["m"]
    state.apply("metric:p:m", None)
    assert catalog.metrics_for("p", "B") == []
    assert catalog.metric("p", "m") is None


def test_conversion_metrics_are_found_by_either_event() -> None:
    state = ConfigState()
    catalog = ConfigCatalog(state)
    conversion = _metric("A", metric_kind="conversion", conversion_event="B")
    state.apply("metric:p:m", conversion)
    assert catalog.metrics_for("p", "A") == catalog.metrics_for("p", "B")
    assert catalog.metrics_for("other", "A") == []


def test_lateness_and_exposure_unit_come_from_projects_and_experiments() -> None:
    state = ConfigState()
    catalog = ConfigCatalog(state)
    assert catalog.lateness("p") == DEFAULT_LATENESS_SECONDS == 300
    state.apply(
        "project:p:p", Project(id="p", project_id="p", name="P", allowed_lateness_seconds=5)
    )
    variants = [Variant(id="a", weight=0.5), Variant(id="b", weight=0.5)]
    state.apply(
        "experiment:p:e",
        Experiment(id="e", project_id="p", variants=variants, unit="anonymousId"),
    )
    assert catalog.lateness("p") == 5
    assert catalog.exposure_unit("p", "e") == "anonymousId"
    assert catalog.exposure_unit("p", "unknown") is None

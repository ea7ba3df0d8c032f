"""The in-stream evaluation: windows close on the event-time watermark, restarts repeat nothing."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sextant.core.config_plane import ConfigState
from sextant.processor.alerting import MetricAlertEngine
from sextant.schemas.config import AlertRule, ConfigDocument, MetricDefinition, Project
from sextant.schemas.records import AlertState, AlertTransition, MetricPoint

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
DROP_MINUTE = 30


def config(lateness: int = 120, **rule_fields: Any) -> ConfigState:
    state = ConfigState()
    documents: list[ConfigDocument] = [
        Project(id="shop", project_id="shop", name="Shop", allowed_lateness_seconds=lateness),
        MetricDefinition(
            id="checkout",
            project_id="shop",
            metric_kind="conversion",
            event="Checkout Started",
            conversion_event="Order Completed",
        ),
        MetricDefinition(id="views", project_id="shop", metric_kind="count", event="$page"),
        AlertRule.model_validate(
            {
                "id": "checkout-drop",
                "project_id": "shop",
                "rule_kind": "threshold",
                "metric": "checkout",
                "direction": "below",
                "threshold": 0.08,
                "recovery_threshold": 0.09,
                "pending_windows": 2,
            }
            | rule_fields
        ),
    ]
    for document in documents:
        state.apply(document.config_key(), document)
    return state


def point(minute: int, rate: float, metric: str = "checkout", version: int = 0) -> MetricPoint:
    start = T0 + minute * MINUTE
    return MetricPoint(
        project_id="shop",
        metric=metric,
        window_start=start,
        count=round(rate * 1000),
        denominator=1000,
        version=version,
        emitted_at=start + MINUTE,
    )


def rate_at(minute: int) -> float:
    """10 % until the drop, 5 % for 10 minutes, then 10 % again."""
    return 0.05 if DROP_MINUTE <= minute < DROP_MINUTE + 10 else 0.10


def drive(
    engine: MetricAlertEngine, points: Iterable[MetricPoint], partition: int = 0
) -> list[AlertTransition]:
    emitted: list[AlertTransition] = []
    for p in points:
        engine.observe(p, partition)
        emitted += engine.close_windows()
    return emitted


def scenario(minutes: int = 60) -> list[MetricPoint]:
    return [point(m, rate_at(m)) for m in range(minutes)]


def test_a_drop_fires_after_the_pending_period_and_resolves_after_recovery() -> None:
    engine = MetricAlertEngine(config())
    transitions = drive(engine, scenario())
    states = [(t.to_state, t.at) for t in transitions]
    assert states == [
        (AlertState.PENDING, T0 + (DROP_MINUTE + 1) * MINUTE),
        (AlertState.FIRING, T0 + (DROP_MINUTE + 2) * MINUTE),
        (AlertState.RESOLVED, T0 + (DROP_MINUTE + 11) * MINUTE),
    ]
    assert len({t.episode_id for t in transitions}) == 1


def test_a_window_is_judged_only_after_the_allowed_lateness() -> None:
    engine = MetricAlertEngine(config(lateness=180, pending_windows=1))
    assert drive(engine, [point(m, 0.10) for m in range(5)] + [point(5, 0.02)]) == []
    # Window 5 ends at minute 6 and closes when minute 9 has started (3 minutes of lateness).
    assert drive(engine, [point(6, 0.1), point(7, 0.1), point(8, 0.1)]) == []
    fired = drive(engine, [point(9, 0.1)])
    assert [t.to_state for t in fired] == [AlertState.FIRING]


def test_the_newest_version_counts_and_points_after_the_close_are_ignored() -> None:
    engine = MetricAlertEngine(config(lateness=60, pending_windows=1))
    drive(engine, [point(0, 0.10), point(1, 0.02)])
    # A correction (a late event) of window 1 arrives before it closes: it replaces the point.
    assert drive(engine, [point(1, 0.10, version=1), point(2, 0.10), point(3, 0.1)]) == []
    # A correction after the close changes nothing.
    assert drive(engine, [point(1, 0.01, version=2), point(4, 0.1)]) == []
    assert engine.late_points == 1


def test_a_partition_not_read_to_its_end_holds_the_watermark_back() -> None:
    engine = MetricAlertEngine(config(lateness=0, pending_windows=1))
    engine.set_lagging({1})
    drive(engine, [point(0, 0.10, metric="views")], partition=1)
    # Partition 0 runs ahead (a replay): windows stay open while partition 1 lags.
    assert drive(engine, [point(m, 0.02) for m in range(10)], partition=0) == []
    engine.set_lagging(set())
    fired = engine.close_windows()
    assert [t.to_state for t in fired] == [AlertState.FIRING]
    assert fired[0].at == T0 + MINUTE


def test_a_partition_not_read_at_all_yet_holds_every_watermark_back() -> None:
    """A replay after a broker restart whose first fetches skip a partition (its leader not
    known yet) must not close the windows whose points that partition holds."""
    engine = MetricAlertEngine(config(lateness=0, pending_windows=1))
    engine.set_lagging({1})
    # Partition 0 is read up to minute 9 of another metric; nothing of partition 1 yet.
    assert drive(engine, [point(m, 0.10, metric="views") for m in range(10)], partition=0) == []
    # The drop was on partition 1: as it is read, it fires for its first window.
    fired = drive(engine, [point(m, 0.02) for m in range(10)], partition=1)
    engine.set_lagging(set())
    fired += engine.close_windows()
    assert [t.to_state for t in fired] == [AlertState.FIRING]
    assert fired[0].at == T0 + MINUTE


def test_a_partition_read_ahead_by_other_projects_bounds_what_it_may_still_hold() -> None:
    """A lagging partition holds every project's watermark back to the latest window read on
    it, whichever project that point was of."""
    engine = MetricAlertEngine(config(lateness=0, pending_windows=1))
    engine.set_lagging({1})
    other = point(3, 0.1, metric="views").model_copy(update={"project_id": "elsewhere"})
    drive(engine, [other], partition=1)
    # Partition 0 is read up to minute 9; partition 1 only up to minute 3.
    assert drive(engine, [point(m, 0.10) for m in range(10)], partition=0) == []
    drive(engine, [point(3, 0.02, version=1)], partition=1)  # window 3's correction
    engine.set_lagging(set())
    fired = engine.close_windows()
    assert (fired[0].to_state, fired[0].at) == (AlertState.FIRING, T0 + 4 * MINUTE)


def test_a_point_from_a_wrong_clock_does_not_close_windows() -> None:
    engine = MetricAlertEngine(config(lateness=0, pending_windows=1))
    drive(engine, [point(0, 0.02)])
    future = point(0, 0.1, metric="views").model_copy(
        update={"window_start": T0 + timedelta(days=30)}
    )
    assert drive(engine, [future]) == []


def test_a_count_that_stops_is_zero_not_missing() -> None:
    state = config(lateness=0)
    views_rule = AlertRule.model_validate(
        {
            "id": "no-views",
            "project_id": "shop",
            "rule_kind": "threshold",
            "metric": "views",
            "direction": "below",
            "threshold": 1,
            "pending_windows": 2,
        }
    )
    state.apply(views_rule.config_key(), views_rule)
    engine = MetricAlertEngine(state)
    drive(engine, [point(0, 0.1, metric="views")])
    # Only the checkout metric moves the watermark on: page views stopped.
    transitions = drive(engine, [point(m, 0.1) for m in range(1, 5)])
    fired = [t for t in transitions if t.rule_id == "no-views"]
    assert [t.to_state for t in fired] == [AlertState.PENDING, AlertState.FIRING]


def test_a_ratio_without_data_reports_no_data() -> None:
    engine = MetricAlertEngine(config(lateness=0, no_data_windows=3))
    drive(engine, [point(0, 0.1)])
    transitions = drive(engine, [point(m, 0.1, metric="views") for m in range(1, 6)])
    assert [(t.to_state, t.at) for t in transitions] == [(AlertState.NO_DATA, T0 + 4 * MINUTE)]


def test_replay_of_the_same_points_gives_identical_transition_ids() -> None:
    first = drive(MetricAlertEngine(config()), scenario())
    second = drive(MetricAlertEngine(config()), scenario())
    assert [t.transition_id for t in first] == [t.transition_id for t in second]
    assert first == second


def test_a_restart_mid_episode_repeats_nothing_and_resolves_the_same_episode() -> None:
    points = scenario()
    live = MetricAlertEngine(config())
    before = drive(live, points[: DROP_MINUTE + 6])  # pending and firing are on the topic
    assert [t.to_state for t in before] == [AlertState.PENDING, AlertState.FIRING]
    recorded = {(t.project_id, t.rule_id): t for t in before}

    restarted = MetricAlertEngine(config(), recorded, silent=True)
    assert drive(restarted, points[: DROP_MINUTE + 6]) == []  # the replay is silent
    assert restarted.finish_catch_up() == []  # and agrees with the record
    after = drive(restarted, points[DROP_MINUTE + 6 :])
    assert [t.to_state for t in after] == [AlertState.RESOLVED]
    assert after[0].episode_id == before[0].episode_id
    assert after[0] == drive(MetricAlertEngine(config()), points)[-1]


def test_a_replay_without_record_reports_an_ongoing_incident_once() -> None:
    engine = MetricAlertEngine(config(), {}, silent=True)
    drive(engine, scenario(DROP_MINUTE + 8))
    summary = engine.finish_catch_up()
    assert [(t.from_state, t.to_state) for t in summary] == [(AlertState.OK, AlertState.FIRING)]


def test_a_rule_defined_later_does_not_report_on_the_past() -> None:
    state = config(lateness=0)
    state.apply("alert_rule:shop:checkout-drop", None)
    engine = MetricAlertEngine(state)
    drive(engine, [point(m, 0.02) for m in range(20)])  # bad, but nobody asked yet
    rule = AlertRule.model_validate(
        {
            "id": "late-rule",
            "project_id": "shop",
            "rule_kind": "threshold",
            "metric": "checkout",
            "direction": "below",
            "threshold": 0.08,
        }
    )
    state.apply(rule.config_key(), rule)
    transitions = drive(engine, [point(m, 0.02) for m in range(20, 22)])
    assert [(t.to_state, t.at) for t in transitions] == [(AlertState.FIRING, T0 + 21 * MINUTE)]

"""Metric rules in the stream: MetricPoints in on Kafka, transitions out, webhooks called.

A checkout conversion of 10 % drops to 5 % at a known minute and recovers ten minutes later;
the rule fires within two windows of its pending period, resolves after recovery, each
transition lands once on the alerts topic and in the warehouse (through the sink), and the
receiver is paged once for the episode and told once that it is over. A restart of the
evaluator repeats nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np

from sextant.core.config_plane import ConfigFollower, ConfigPublisher
from sextant.core.kafka import make_producer, read_all
from sextant.core.settings import KafkaSection
from sextant.core.warehouse import Warehouse
from sextant.processor.alerting import MetricAlertService
from sextant.schemas.config import AlertRule, MetricDefinition, Project
from sextant.schemas.records import AlertTransition, MetricPoint
from sextant.schemas.topics import Topic, topic_name
from sextant.sink.service import SinkService
from sextant.sink.settings import SinkSettings
from tests.infra import wait_for
from tests.integration.alerting_support import SECRET, notifier, receiver

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
DROP, RECOVERY = 30, 40  # the rate is 5 % in minutes [30, 40), 10 % otherwise
PENDING = 2


def configure(kafka: KafkaSection, hook_url: str) -> None:
    publisher = ConfigPublisher(kafka)
    try:
        publisher.put(
            [
                Project(id="shop", project_id="shop", name="Shop", allowed_lateness_seconds=60),
                MetricDefinition(
                    id="checkout",
                    project_id="shop",
                    metric_kind="conversion",
                    event="Checkout Started",
                    conversion_event="Order Completed",
                ),
                AlertRule.model_validate(
                    {
                        "id": "checkout-drop",
                        "project_id": "shop",
                        "name": "Checkout conversion dropped",
                        "rule_kind": "threshold",
                        "metric": "checkout",
                        "direction": "below",
                        "threshold": 0.08,
                        "recovery_threshold": 0.09,
                        "pending_windows": PENDING,
                        "severity": "critical",
                        "targets": [{"url": hook_url, "secret": SECRET}],
                    }
                ),
            ]
        )
    finally:
        publisher.close()


def produce_minutes(kafka: KafkaSection, minutes: range) -> None:
    """The processor's points for ``minutes``: 1000 checkouts a minute; the first version of
    each window a little off, then the correction the processor emits as late events come."""
    producer = make_producer(kafka)
    topic = topic_name(Topic.METRIC_POINTS, kafka.topic_prefix)
    for minute in minutes:
        rate = 0.05 if DROP <= minute < RECOVERY else 0.10
        start = T0 + minute * MINUTE
        for version, users in ((1, 900), (2, 1000)):
            point = MetricPoint(
                project_id="shop",
                metric="checkout",
                window_start=start,
                count=round(rate * users),
                denominator=users,
                version=version,
                emitted_at=start + MINUTE,
            )
            producer.send(
                topic, key=point.kafka_key().encode(), value=point.model_dump_json().encode()
            )
    producer.flush(timeout=30)
    producer.close()


def alerts(kafka: KafkaSection) -> list[AlertTransition]:
    topic = topic_name(Topic.ALERTS, kafka.topic_prefix)
    return [AlertTransition.model_validate_json(r.value or b"") for r in read_all(kafka, topic)]


@contextlib.contextmanager
def evaluator(kafka: KafkaSection) -> Iterator[MetricAlertService]:
    follower = ConfigFollower(kafka).start()
    service = MetricAlertService(kafka, follower.state, lambda: follower.caught_up)
    service.start()
    try:
        assert service.wait_caught_up(60)
        yield service
    finally:
        service.stop()
        follower.stop()


@contextlib.contextmanager
def sink(kafka: KafkaSection, warehouse_url: str) -> Iterator[SinkService]:
    service = SinkService(
        SinkSettings(
            kafka_bootstrap=kafka.kafka_bootstrap,
            topic_prefix=kafka.topic_prefix,
            clickhouse_url=warehouse_url,
            sink_batch_seconds=0.2,
        )
    )
    service.start()
    try:
        yield service
    finally:
        service.stop()


def stored(warehouse: Warehouse) -> list[tuple[str, str]]:
    rows = warehouse.query_rows(
        "SELECT from_state, to_state FROM alert_events_unique WHERE rule_id = 'checkout-drop'"
        " ORDER BY at"
    )
    return [(str(a), str(b)) for a, b in rows]


def test_a_conversion_drop_fires_after_the_pending_period_and_resolves_after_recovery(
    kafka_settings: KafkaSection, warehouse: Warehouse, warehouse_url: str
) -> None:
    with receiver() as hook:
        configure(kafka_settings, hook.url)
        with (
            sink(kafka_settings, warehouse_url),
            notifier(kafka_settings),
            evaluator(kafka_settings),
        ):
            produce_minutes(kafka_settings, range(60))
            wait_for(lambda: len(hook.processed) == 2, 60, message="firing and resolved")
            wait_for(lambda: len(stored(warehouse)) == 3, 60, message="transitions stored")
        on_topic = alerts(kafka_settings)

        # A restart rebuilds the state from the replay and the record: nothing is repeated.
        with notifier(kafka_settings), evaluator(kafka_settings) as restarted:
            produce_minutes(kafka_settings, range(60, 70))
            wait_for(
                lambda: (
                    restarted.engine is not None
                    and restarted.engine.watermarks.watermark("shop") == T0 + 69 * MINUTE
                ),
                30,
                message="the new minutes read",
            )
        after_restart = alerts(kafka_settings)

    assert [(t.from_state, t.to_state) for t in on_topic] == [
        ("ok", "pending"),
        ("pending", "firing"),
        ("firing", "resolved"),
    ]
    pending, firing, resolved = on_topic
    assert firing.at - (T0 + DROP * MINUTE) <= (PENDING + 2) * MINUTE
    assert firing.at == T0 + (DROP + PENDING) * MINUTE
    assert resolved.at == T0 + (RECOVERY + 1) * MINUTE
    assert firing.value == 0.05  # the newest version of the window (50 of 1000), not 45 of 900
    assert len({pending.episode_id, firing.episode_id, resolved.episode_id}) == 1

    paged = hook.transitions()
    assert [t["to_state"] for t in paged] == ["firing", "resolved"]
    assert [t["transition_id"] for t in paged] == [firing.transition_id, resolved.transition_id]
    assert len(hook.requests) == 2  # one page per episode, one all-clear: nothing per window

    assert stored(warehouse) == [("ok", "pending"), ("pending", "firing"), ("firing", "resolved")]
    assert after_restart == on_topic


def test_noise_around_a_steady_rate_does_not_fire_and_a_drop_does(
    kafka_settings: KafkaSection,
) -> None:
    publisher = ConfigPublisher(kafka_settings)
    try:
        publisher.put(
            [
                Project(id="shop", project_id="shop", name="Shop", allowed_lateness_seconds=0),
                MetricDefinition(
                    id="checkout",
                    project_id="shop",
                    metric_kind="conversion",
                    event="Checkout Started",
                    conversion_event="Order Completed",
                ),
                AlertRule.model_validate(
                    {
                        "id": "checkout-anomaly",
                        "project_id": "shop",
                        "rule_kind": "anomaly",
                        "metric": "checkout",
                        "direction": "either",
                        "k_sigma": 3,
                        "pending_windows": 3,
                        "min_volume": 500,
                    }
                ),
            ]
        )
    finally:
        publisher.close()
    rng = np.random.default_rng(2026)
    steady, drop = 480, 6  # eight hours of minutes around 10 %, then 5 %
    with evaluator(kafka_settings):
        producer = make_producer(kafka_settings)
        topic = topic_name(Topic.METRIC_POINTS, kafka_settings.topic_prefix)
        for minute in range(steady + drop + 1):
            users = int(rng.poisson(2000))
            rate = 0.10 if minute < steady else 0.05
            start = T0 + minute * MINUTE
            point = MetricPoint(
                project_id="shop",
                metric="checkout",
                window_start=start,
                count=int(rng.binomial(users, rate)),
                denominator=users,
                emitted_at=start + MINUTE,
            )
            value = point.model_dump_json().encode()
            producer.send(topic, key=point.kafka_key().encode(), value=value)
        producer.flush(timeout=30)
        producer.close()
        wait_for(
            lambda: any(t.to_state == "firing" for t in alerts(kafka_settings)),
            60,
            message="the drop fires",
        )
    fired = [t for t in alerts(kafka_settings) if t.to_state == "firing"]
    assert [t.at for t in fired] == [T0 + (steady + 3) * MINUTE]  # only the drop, after 3


def test_the_start_up_replay_reaches_back_replay_hours_only(kafka_settings: KafkaSection) -> None:
    producer = make_producer(kafka_settings)
    topic = topic_name(Topic.METRIC_POINTS, kafka_settings.topic_prefix)
    day_ago_ms = int((datetime.now(UTC) - timedelta(days=1)).timestamp() * 1000)
    for minute in range(5):
        start = T0 + minute * MINUTE
        point = MetricPoint(
            project_id="shop", metric="checkout", window_start=start, emitted_at=start
        )
        value = point.model_dump_json().encode()
        producer.send(topic, key=b"shop:checkout", value=value, timestamp_ms=day_ago_ms)
    producer.flush(timeout=30)
    producer.close()

    def replayed(hours: float | None) -> datetime | None:
        service = MetricAlertService(
            kafka_settings, ConfigFollower(kafka_settings).state, replay_hours=hours
        )
        service.start()
        try:
            assert service.wait_caught_up(60)
            assert service.engine is not None
            return service.engine.watermarks.watermark("shop")
        finally:
            service.stop()

    assert replayed(1.0) is None  # the points are a day old
    assert replayed(48.0) == T0 + 4 * MINUTE
    assert replayed(None) == T0 + 4 * MINUTE

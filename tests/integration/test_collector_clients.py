"""The real Segment and PostHog clients from PyPI, pointed at the collector, deliver events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from posthog import Posthog
from segment.analytics import Client as SegmentClient

from sextant.core.settings import KafkaSection
from sextant.schemas.events import Envelope
from sextant.schemas.topics import Topic
from tests.integration.test_collector_kafka import (
    WRITE_KEY,
    RunningCollector,
    publish_demo_project,
    running_collector,
    topic_records,
)


@pytest.fixture
def collector(kafka_settings: KafkaSection) -> Iterator[RunningCollector]:
    publish_demo_project(kafka_settings)
    with running_collector(kafka_settings) as running:
        yield running


def envelopes(settings: KafkaSection) -> list[Envelope]:
    return [
        Envelope.model_validate_json(r.value or b"")
        for r in topic_records(settings, Topic.EVENTS_RAW)
    ]


@pytest.mark.parametrize("gzip", [False, True])
def test_segment_analytics_python_delivers_every_call(
    collector: RunningCollector, kafka_settings: KafkaSection, gzip: bool
) -> None:
    errors: list[Any] = []
    client = SegmentClient(
        WRITE_KEY, host=collector.url, gzip=gzip, on_error=lambda e, _: errors.append(e)
    )
    for i in range(40):
        client.track(f"user-{i % 4}", "Order Completed", {"revenue": i})
    client.identify("user-1", {"plan": "pro"})
    client.page("user-1", "Docs", "Pricing", {"path": "/pricing"})
    client.screen("user-1", "App", "Settings")
    client.group("user-1", "acme", {"seats": 3})
    client.alias("user-1", "user-one")
    client.flush()
    client.shutdown()
    assert errors == []
    received = envelopes(kafka_settings)
    assert len(received) == 45
    names = {e.event for e in received}
    assert names == {"Order Completed", "$identify", "$page", "$screen", "$group", "$alias"}
    assert {e.context["library"]["name"] for e in received} == {"analytics-python"}
    assert sorted(
        e.properties["revenue"] for e in received if e.event == "Order Completed"
    ) == list(range(40))


def test_posthog_python_delivers_its_events(
    collector: RunningCollector, kafka_settings: KafkaSection
) -> None:
    errors: list[Any] = []
    client = Posthog(
        WRITE_KEY,
        host=collector.url,
        on_error=lambda e, _: errors.append(e),
        enable_exception_autocapture=False,
    )
    for i in range(20):
        client.capture("Signed Up", distinct_id=f"ph-{i % 5}", properties={"n": i})
    client.set(distinct_id="ph-1", properties={"plan": "team"})
    client.alias(previous_id="anon-9", distinct_id="ph-1")
    client.group_identify("company", "acme", {"seats": 10}, distinct_id="ph-1")
    client.flush()
    client.shutdown()
    assert errors == []
    received = envelopes(kafka_settings)
    assert len(received) == 23
    signed_up = [e for e in received if e.event == "Signed Up"]
    assert sorted(e.properties["n"] for e in signed_up) == list(range(20))
    assert {e.distinct_id for e in signed_up} == {f"ph-{i}" for i in range(5)}
    identify = next(e for e in received if e.event == "$identify")
    assert identify.traits == {"plan": "team"}
    alias = next(e for e in received if e.event == "$alias")
    assert (alias.user_id, alias.previous_id) == ("ph-1", "anon-9")
    group = next(e for e in received if e.event == "$group")
    assert group.group_id == "acme"

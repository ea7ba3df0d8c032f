"""Hostile input against a running collector with a real broker: never a 5xx, every answer says
what is wrong and where, and every event rejected inside an accepted batch is dead-lettered.

The one 5xx the collector may answer is 503 with ``Retry-After`` and ``where: kafka`` (the
broker did not acknowledge in time; nothing was acknowledged and the client sends again).
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sextant.core.settings import KafkaSection
from sextant.schemas.events import Envelope, InvalidEvent
from sextant.schemas.topics import Topic
from tests.infra import wait_for
from tests.integration.test_collector_kafka import (
    WRITE_KEY,
    RunningCollector,
    basic,
    publish_demo_project,
    running_collector,
    topic_records,
)

CHECKS = Path(__file__).with_name("collector_fuzz_checks.py")
MAX_BATCH_BYTES = 64_000
MAX_EVENT_BYTES = 4_000


@pytest.fixture
def collector(kafka_settings: KafkaSection) -> Iterator[RunningCollector]:
    publish_demo_project(kafka_settings, rate_limit=1_000_000)
    with running_collector(
        kafka_settings,
        max_batch_bytes=MAX_BATCH_BYTES,
        max_event_bytes=MAX_EVENT_BYTES,
        produce_timeout_seconds=10.0,
    ) as running:
        yield running


def test_schemathesis_finds_no_server_error(collector: RunningCollector) -> None:
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{collector.url}/openapi.json",
        "--checks",
        "collector_no_server_error_but_retryable_503",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "15",
        "--seed",
        "20250301",
        "--request-timeout",
        "30",
        "--include-path-regex",
        r"^/(v1|batch|capture|e)/",
        "-H",
        f"Authorization:{basic(WRITE_KEY)['Authorization']}",
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"SCHEMATHESIS_HOOKS": str(CHECKS), "PATH": str(Path(sys.executable).parent)},
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    # Every route of the write key was exercised: the Segment calls, batches and PostHog's
    # capture, and what a write key reads (Segment's settings, the assignment definitions).
    assert "Tested: 12" in output, output[-3000:]


# --- hostile bodies -------------------------------------------------------------------------


@dataclass
class Hostile:
    """One request body and its headers; ``events`` is the batch the collector will see when
    the body is a well-formed batch (after gzip, with duplicate keys resolved last-wins)."""

    kind: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    events: list[Any] | None = None


def _batch(events: list[Any], kind: str, **document: Any) -> Hostile:
    return Hostile(kind, orjson.dumps({**document, "batch": events}), events=events)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
valid_event = st.fixed_dictionaries(
    {"type": st.just("track"), "event": st.just("Fuzzed"), "userId": st.just("u1")},
    optional={"properties": st.dictionaries(st.text(max_size=8), json_values, max_size=3)},
)
wrong_event = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "type": json_values,
            "event": json_values,
            "userId": json_values,
            "anonymousId": json_values,
            "properties": json_values,
            "timestamp": json_values,
            "messageId": json_values,
        },
    ),
)


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _deep_event(depth: int) -> bytes:
    return b'{"type":"track","event":"Deep","userId":"u1","properties":' + _nested(depth) + b"}"


@st.composite
def hostile(draw: st.DrawFn) -> Hostile:
    kind = draw(
        st.sampled_from(
            [
                "malformed",
                "wrong_types",
                "mixed_batch",
                "huge_property",
                "huge_event",
                "deep_parse_limit",
                "deep_nesting",
                "invalid_utf8",
                "nan_infinity",
                "duplicate_keys",
                "empty",
                "oversized",
                "gzip_bomb",
                "bad_gzip",
                "content_type",
                "clock_skew",
            ]
        )
    )
    if kind == "malformed":
        valid = orjson.dumps({"batch": [{"type": "track", "event": "E", "userId": "u1"}]})
        cut = draw(st.integers(min_value=1, max_value=len(valid) - 1))
        junk = draw(st.binary(max_size=40))
        return Hostile(kind, draw(st.sampled_from([valid[:cut], junk + b"{", b"{" + junk])))
    if kind == "wrong_types":
        top = draw(
            st.one_of(
                json_values,
                st.fixed_dictionaries({"batch": json_values}),
                st.fixed_dictionaries(
                    {"batch": st.just([]), "sentAt": st.one_of(json_values, st.text(max_size=9))}
                ),
            )
        )
        events = top.get("batch") if isinstance(top, dict) else None
        good = isinstance(events, list) and not (
            isinstance(top, dict) and top.get("sentAt") not in (None, "")
        )
        return Hostile(kind, orjson.dumps(top), events=events if good else None)
    if kind == "mixed_batch":
        events = draw(st.lists(st.one_of(valid_event, wrong_event), min_size=1, max_size=8))
        return _batch(events, kind)
    if kind == "huge_property":
        # One event over the event limit beside a good one: the first is dead-lettered.
        big = {"type": "track", "event": "Big", "userId": "u1", "properties": {"p": "x" * 5_000}}
        return _batch([big, {"type": "track", "event": "Small", "userId": "u1"}], kind)
    if kind == "huge_event":
        return _batch([{"type": "track", "event": "x" * 100_000, "userId": "u1"}], kind)
    if kind == "deep_parse_limit":
        # 10,000 levels: past what the JSON parser accepts.
        return Hostile(kind, b'{"batch":[' + _deep_event(10_000) + b"]}")
    if kind == "deep_nesting":
        depth = draw(st.sampled_from([100, 253, 254, 255, 300, 600, 1000]))
        body = b'{"batch":[' + _deep_event(depth) + b"]}"
        return Hostile(kind, body, events=orjson.loads(body)["batch"])
    if kind == "invalid_utf8":
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80"]))
        return Hostile(kind, b'{"batch":[{"type":"track","event":"' + bad + b'","userId":"u"}]}')
    if kind == "nan_infinity":
        literal = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"nan"]))
        return Hostile(
            kind,
            b'{"batch":[{"type":"track","event":"E","userId":"u","properties":{"v":'
            + literal
            + b"}}]}",
        )
    if kind == "duplicate_keys":
        body = (
            b'{"batch":[{"type":"track","type":"identify","userId":"u1","userId":[],'
            b'"event":"E","properties":{"a":1,"a":"two"}}],"batch":[{"type":"alias"}]}'
        )
        return Hostile(kind, body, events=orjson.loads(body)["batch"])
    if kind == "empty":
        body = draw(st.sampled_from([b"", b"   ", b"{}", b"[]", b'{"batch":[]}', b"null"]))
        return Hostile(kind, body, events=[] if body == b'{"batch":[]}' else None)
    if kind == "oversized":
        event = {"type": "track", "event": "E", "userId": "u1"}
        return Hostile(kind, orjson.dumps({"batch": [event] * 3_000}))
    if kind == "clock_skew":
        ends: st.SearchStrategy[Any] = st.sampled_from(
            ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59+00:00", "bogus", 7]
        )
        skewed: dict[str, Any] = {
            "type": "track",
            "event": "Skewed",
            "userId": "u1",
            "timestamp": draw(ends),
            "sentAt": draw(ends),
        }
        return _batch([skewed], kind)
    if kind == "gzip_bomb":
        return Hostile(
            kind,
            gzip.compress(b" " * (5 * 1024 * 1024), compresslevel=9),
            {"Content-Encoding": "gzip"},
        )
    if kind == "bad_gzip":
        zipped = gzip.compress(orjson.dumps({"batch": []}))
        body = draw(st.sampled_from([zipped[:-5], b"not gzip at all", zipped + b"trailing"]))
        return Hostile(kind, body, {"Content-Encoding": "gzip"})
    content_type = draw(
        st.sampled_from(
            [
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
                "image/png",
                "application/json; charset=latin-1",
                "",
            ]
        )
    )
    encoding = draw(st.sampled_from([None, "br", "deflate", "identity"]))
    headers = {"Content-Type": content_type}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    events = [{"type": "track", "event": "E", "userId": "u1"}]
    usable = encoding in (None, "identity")
    return Hostile(kind, orjson.dumps({"batch": events}), headers, events if usable else None)


def _assert_clear_error(answer: httpx.Response, case: Hostile) -> None:
    assert answer.headers.get("content-type") == "application/json", (case, answer.text)
    error = answer.json()
    assert error["code"], (case.kind, error)
    assert error["message"], (case.kind, error)
    assert error["where"], (case.kind, error)


def test_hostile_bodies_get_a_clear_answer_and_rejected_events_are_dead_lettered(
    collector: RunningCollector, kafka_settings: KafkaSection
) -> None:
    url = f"{collector.url}/v1/batch"
    dead_lettered: Counter[bytes] = Counter()
    kinds: Counter[str] = Counter()

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=hostile())
    def send(case: Hostile) -> None:
        kinds[case.kind] += 1
        headers = basic(WRITE_KEY) | case.headers
        answer = httpx.post(url, content=case.body, headers=headers, timeout=30)
        status = answer.status_code
        if status == 503:  # the one allowed 5xx: Kafka was slow; nothing was acknowledged
            assert answer.json()["where"] == "kafka", answer.text
            assert "Retry-After" in answer.headers
            return
        assert status < 500, (case.kind, status, answer.text[:300])
        if status != 200:
            assert 400 <= status < 500
            _assert_clear_error(answer, case)
            return
        assert case.events is not None, (case.kind, answer.text[:300])
        result = answer.json()
        assert result["accepted"] + len(result["rejected"]) == len(case.events)
        for rejection in result["rejected"]:
            assert rejection["errors"], rejection
            assert all(error["message"] for error in rejection["errors"]), rejection
            original = case.events[rejection["index"]]
            dead_lettered[orjson.dumps(original, option=orjson.OPT_SORT_KEYS)] += 1

    send()
    assert dead_lettered, f"no event was rejected inside an accepted batch: {kinds}"

    def found() -> Counter[bytes] | None:
        records = topic_records(kafka_settings, Topic.EVENTS_INVALID)
        payloads = Counter(
            orjson.dumps(
                orjson.loads(InvalidEvent.model_validate_json(r.value or b"").payload),
                option=orjson.OPT_SORT_KEYS,
            )
            for r in records
        )
        return payloads if payloads == dead_lettered else None

    wait_for(found, timeout_s=30, interval_s=0.5, message="every rejected event dead-lettered")


@pytest.mark.parametrize(
    ("body", "status", "where"),
    [
        # Past what orjson writes (254 levels) but within what it reads (1024).
        (b'{"batch":[' + _deep_event(300) + b"]}", 400, "body, event 0"),
        (b'{"batch":[' + _deep_event(10_000) + b"]}", 400, "body"),
        (
            b'{"batch":[{"type":"track","event":"E","userId":"u","properties":{"v":NaN}}]}',
            400,
            "body",
        ),
    ],
)
def test_bodies_that_once_got_a_server_error_get_a_4xx(
    collector: RunningCollector, body: bytes, status: int, where: str
) -> None:
    answer = httpx.post(f"{collector.url}/v1/batch", content=body, headers=basic(WRITE_KEY))
    assert (answer.status_code, answer.json()["where"]) == (status, where), answer.text


def test_clock_skew_beyond_the_calendar_is_accepted_with_the_client_timestamp(
    collector: RunningCollector, kafka_settings: KafkaSection
) -> None:
    event = {
        "type": "track",
        "event": "Skewed",
        "userId": "u1",
        "timestamp": "0001-01-01T00:00:00Z",
        "sentAt": "9999-12-31T23:59:59Z",
    }
    answer = httpx.post(
        f"{collector.url}/v1/batch", json={"batch": [event]}, headers=basic(WRITE_KEY)
    )
    assert answer.json() == {"accepted": 1, "rejected": []}
    [record] = topic_records(kafka_settings, Topic.EVENTS_RAW)
    envelope = Envelope.model_validate_json(record.value or b"")
    assert envelope.timestamp == envelope.original_timestamp
    assert envelope.timestamp.year == 1

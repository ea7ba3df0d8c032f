"""The compiled record reader yields exactly what kafka-python's own reader yields."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.consumer.fetcher import Fetcher
from kafka.errors import CorruptRecordError
from kafka.record import MemoryRecords
from kafka.record.memory_records import MemoryRecordsBuilder
from kafka.structs import TopicPartition

from sextant.core.native_records import NativePartitionRecords

TP = TopicPartition("sextant.events.raw", 3)
CODECS = {"none": 0, "gzip": 1, "lz4": 3, "zstd": 4}

record_strategy = st.fixed_dictionaries(
    {
        "key": st.none() | st.binary(max_size=40),
        "value": st.none() | st.binary(max_size=600),
        "headers": st.lists(
            st.tuples(st.text(max_size=10), st.none() | st.binary(max_size=20)), max_size=3
        ),
        "timestamp": st.integers(min_value=0, max_value=2**41),
    }
)


def log_segment(batches: list[list[dict[str, Any]]], codec: int) -> bytes:
    """Consecutive v2 batches of ``batches``' records, as a fetch response carries them."""
    out, offset = bytearray(), 0
    for records in batches:
        builder = MemoryRecordsBuilder(
            magic=2, compression_type=codec, batch_size=1 << 20, offset=offset
        )
        for record in records:
            builder.append(**record)
        builder.close()
        out += builder.buffer()
        offset += len(records)
    return bytes(out)


def read(reader: type, segment: bytes, fetch_offset: int, **options: Any) -> tuple[Any, ...]:
    part = reader(fetch_offset, TP, MemoryRecords(segment), **options)
    records = part.take()
    return records, part.next_fetch_offset, part.records_read, bool(part)


@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(st.lists(record_strategy, min_size=1, max_size=8), min_size=1, max_size=4),
    codec=st.sampled_from(sorted(CODECS)),
    skip=st.integers(min_value=0, max_value=40),
)
def test_both_readers_yield_the_same_records(
    batches: list[list[dict[str, Any]]], codec: str, skip: int
) -> None:
    segment = log_segment(batches, CODECS[codec])
    total = sum(len(b) for b in batches)
    fetch_offset = min(skip, total - 1)  # a fetch may start inside a batch
    expected = read(Fetcher.PartitionRecords, segment, fetch_offset, check_crcs=True)
    native = read(NativePartitionRecords, segment, fetch_offset, check_crcs=True)
    assert native == expected
    assert [r.offset for r in native[0]] == list(range(fetch_offset, total))


def test_deserializers_are_applied_as_kafka_python_applies_them() -> None:
    class Upper:
        def deserialize(self, _topic: str, _headers: Any, data: bytes | None) -> Any:
            return None if data is None else data.upper()

    segment = log_segment(
        [[{"key": b"k", "value": b"v", "headers": [], "timestamp": 5}]], CODECS["lz4"]
    )
    options = {"key_deserializer": Upper(), "value_deserializer": Upper()}
    native = read(NativePartitionRecords, segment, 0, **options)
    assert native == read(Fetcher.PartitionRecords, segment, 0, **options)
    assert (native[0][0].key, native[0][0].value) == (b"K", b"V")


def test_a_corrupt_batch_is_refused_when_crcs_are_checked() -> None:
    segment = bytearray(
        log_segment([[{"key": b"k", "value": b"value", "headers": [], "timestamp": 5}]], 0)
    )
    segment[-2] ^= 0xFF  # a byte of the record's value
    part = NativePartitionRecords(0, TP, MemoryRecords(bytes(segment)), check_crcs=True)
    with pytest.raises(CorruptRecordError, match="crc"):
        part.take()

"""The producer's zstd (one reused context per thread) writes batches every reader decodes."""

from __future__ import annotations

import threading

import pytest
import zstandard
from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record._crecords import default_records as compiled_records
from aiokafka.record._crecords.default_records import DefaultRecordBatch
from kafka.record import MemoryRecords

from sextant.core import aio_kafka
from sextant.core.aio_kafka import zstd_encode

RECORDS = [
    (f"user-{i}".encode(), f'{{"event":"Order Completed","n":{i}}}'.encode() * 8) for i in range(60)
]


def zstd_batch() -> bytes:
    compression = AIOKafkaProducer._COMPRESSORS["zstd"][1]
    builder = BatchBuilder(256 * 1024, compression, is_transactional=False)
    for key, value in RECORDS:
        assert builder.append(timestamp=None, key=key, value=value) is not None
    return bytes(builder._build())


def test_aiokafka_batches_are_compressed_by_the_reused_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert compiled_records.zstd_encode is aio_kafka.zstd_encode
    calls: list[int] = []

    def counting(payload: bytes, level: int | None = None) -> bytes:
        calls.append(len(payload))
        return zstd_encode(payload, level)

    monkeypatch.setattr(compiled_records, "zstd_encode", counting)
    zstd_batch()
    assert len(calls) == 1


def test_a_batch_reads_back_in_aiokafka_and_kafka_python() -> None:
    data = zstd_batch()
    compiled = [(r.key, r.value) for r in DefaultRecordBatch(data)]
    records = MemoryRecords(data)
    batch = records.next_batch()
    assert batch is not None
    python = [(r.key, r.value) for r in batch]
    assert compiled == python == RECORDS


@pytest.mark.parametrize("level", [None, 1, 3, 9])
def test_zstd_encode_round_trips_at_every_level(level: int | None) -> None:
    payload = b"".join(value for _, value in RECORDS)
    for _ in range(3):  # the reused context must start each frame afresh
        assert zstandard.decompress(zstd_encode(payload, level)) == payload


def test_each_thread_has_its_own_context() -> None:
    payload = b"x" * 100_000
    results: list[bool] = []

    def compress_many() -> None:
        results.append(
            all(zstandard.decompress(zstd_encode(payload)) == payload for _ in range(50))
        )

    threads = [threading.Thread(target=compress_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 4

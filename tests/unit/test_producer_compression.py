"""The producer's zstd batches are what every reader decodes."""

from __future__ import annotations

from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record import MemoryRecords

ZSTD = 4  # a record batch's compression attribute for zstd
RECORDS = [
    (f"user-{i}".encode(), f'{{"event":"Order Completed","n":{i}}}'.encode() * 8) for i in range(60)
]


def zstd_batch() -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=ZSTD,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=256 * 1024,
    )
    for offset, (key, value) in enumerate(RECORDS):
        assert builder.append(offset, timestamp=None, key=key, value=value, headers=[])
    return bytes(builder.build())


def test_a_batch_reads_back_in_aiokafka_and_kafka_python() -> None:
    data = zstd_batch()
    compiled = [(r.key, r.value) for r in DefaultRecordBatch(data)]
    records = MemoryRecords(data)
    batch = records.next_batch()
    assert batch is not None
    python = [(r.key, r.value) for r in batch]
    assert compiled == python == RECORDS

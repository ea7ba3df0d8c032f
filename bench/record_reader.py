"""Reading fetched records: aiokafka's compiled reader (the sink's, through
``sextant.core.batch_consumer``) beside kafka-python's own.

The same fetch responses (v2 record batches of 500 sink-sized records, zstd as the collector
writes them) are read by kafka-python's ``PartitionRecords`` and by aiokafka's
``MemoryRecords`` (what its consumer's fetcher reads a response with), alternating for
``--rounds`` rounds in one process; the figure is the best µs per record of each.

Run: ``python -m bench.record_reader [--records N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import os
import time

from aiokafka.record.memory_records import MemoryRecords as AIOMemoryRecords
from aiokafka.structs import ConsumerRecord
from kafka.consumer.fetcher import Fetcher
from kafka.record import MemoryRecords
from kafka.record.memory_records import MemoryRecordsBuilder
from kafka.structs import TopicPartition

from bench.common import Figure, write_results

NAME = "record_reader"
COMMAND = "python -m bench.record_reader"
ZSTD = 4
BATCH = 500
PER_FETCH = 10  # batches in one partition's fetch response
VALUE_BYTES = 560


def fetch_responses(records: int) -> list[bytes]:
    """One partition's fetched bytes, ``PER_FETCH`` batches at a time."""
    value = os.urandom(VALUE_BYTES // 2).hex().encode()
    responses = []
    for _ in range(max(records // (BATCH * PER_FETCH), 1)):
        segment, offset = bytearray(), 0
        for _ in range(PER_FETCH):
            builder = MemoryRecordsBuilder(
                magic=2, compression_type=ZSTD, batch_size=1 << 20, offset=offset
            )
            for i in range(BATCH):
                key = b"shop:user-%d" % i
                builder.append(timestamp=1_780_000_000_000 + i, key=key, value=value, headers=[])
            builder.close()
            segment += builder.buffer()
            offset += BATCH
        responses.append(bytes(segment))
    return responses


def microseconds_per_record(responses: list[bytes]) -> float:
    """kafka-python's reader, a record object (``ConsumerRecord``) each."""
    partition = TopicPartition("sextant.events.raw", 0)
    began = time.perf_counter()
    read = 0
    for response in responses:
        records = MemoryRecords(response)
        read += len(Fetcher.PartitionRecords(0, partition, records, check_crcs=False).take())
    return (time.perf_counter() - began) / read * 1e6


def compiled_microseconds_per_record(responses: list[bytes]) -> float:
    """aiokafka's compiled reader, a record object (``ConsumerRecord``) each, as its
    consumer makes them."""
    began = time.perf_counter()
    read = 0
    for response in responses:
        records = AIOMemoryRecords(response)
        while (batch := records.next_batch()) is not None:
            for r in batch:
                ConsumerRecord(
                    "sextant.events.raw",
                    0,
                    r.offset,
                    r.timestamp,
                    r.timestamp_type,
                    r.key,
                    r.value,
                    r.checksum,
                    len(r.key) if r.key is not None else -1,
                    len(r.value) if r.value is not None else -1,
                    tuple(r.headers),
                )
                read += 1
    return (time.perf_counter() - began) / read * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    responses = fetch_responses(args.records)
    best = {"kafka-python": float("inf"), "native": float("inf")}
    for _ in range(args.rounds):
        best["kafka-python"] = min(best["kafka-python"], microseconds_per_record(responses))
        best["native"] = min(best["native"], compiled_microseconds_per_record(responses))
        print({name: round(value, 2) for name, value in best.items()}, flush=True)
    figure = Figure(
        benchmark=NAME,
        figure="µs to read one fetched record, aiokafka's compiled reader (zstd batches of 500, "
        "560 B values)",
        value=best["native"],
        unit="µs/record",
        baseline="kafka-python's own record reader, same bytes",
        baseline_value=best["kafka-python"],
        command=COMMAND,
    )
    path = write_results(NAME, [figure])
    print(f"native {figure.value:.2f} µs, kafka-python {figure.baseline_value:.2f} µs → {path}")


if __name__ == "__main__":
    main()

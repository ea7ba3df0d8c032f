"""kafka-python's consumer, with the records of each fetched batch read by aiokafka's C parser.

kafka-python reads every record of a v2 batch in pure Python (varints, headers, a
``ConsumerRecord`` per record): about 3 µs a record, the largest single cost of the sink's
loop. aiokafka ships the same format's reader compiled (about 0.2 µs a record).
:class:`NativePartitionRecords` keeps kafka-python's handling of each *batch* (transaction
markers, aborted transactions, control batches, CRC checks, fetch positions) and hands only
the batch's bytes to aiokafka for its records. The records it yields are kafka-python's own
``ConsumerRecord`` tuples, field for field (``tests/unit/test_native_records.py`` compares the
two readers on the same batches).

Used by :class:`sextant.core.batch_consumer.BatchConsumer` through :func:`use_native_records`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kafka.errors as kafka_errors
from aiokafka.record.default_records import DefaultRecordBatch as NativeBatch
from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord, Fetcher
from kafka.protocol.consumer import IsolationLevel

__all__ = ["NativePartitionRecords", "use_native_records"]


class NativePartitionRecords(Fetcher.PartitionRecords):  # type: ignore[misc]  # untyped
    """One partition's fetched records, v2 batches read by aiokafka's compiled reader."""

    def _unpack_records(
        self, tp: Any, records: Any, key_deserializer: Any, value_deserializer: Any
    ) -> Iterator[ConsumerRecord]:
        batch = records.next_batch()
        last_batch = None
        while batch is not None:
            last_batch = batch
            if self.check_crcs and not batch.validate_crc():
                raise kafka_errors.CorruptRecordError(
                    f"Record batch for partition {tp} at offset {batch.base_offset} "
                    "failed crc check"
                )
            if batch.magic != 2:
                # Message formats v0/v1 (brokers before 0.11): kafka-python's own reader.
                yield from self._legacy_records(tp, batch, key_deserializer, value_deserializer)
            elif self._skipped(batch):
                self.next_fetch_offset = batch.next_offset
            else:
                yield from self._batch_records(tp, batch, key_deserializer, value_deserializer)
            batch = records.next_batch()
        if last_batch is not None and last_batch.magic == 2:
            # v2 keeps a batch's last offset even when compaction removed its last record.
            self.next_fetch_offset = last_batch.next_offset
        self.drain()

    def _skipped(self, batch: Any) -> bool:
        """Whether ``batch`` is a control batch or belongs to an aborted transaction."""
        self.leader_epoch = batch.leader_epoch
        if self.isolation_level == IsolationLevel.READ_COMMITTED and batch.has_producer_id():
            self._consume_aborted_transactions_up_to(batch.last_offset)
            if self._contains_abort_marker(batch):
                self.aborted_producer_ids.discard(batch.producer_id)
            elif self._is_batch_aborted(batch):
                return True
        return bool(batch.is_control_batch)

    def _batch_records(
        self, tp: Any, batch: Any, key_deserializer: Any, value_deserializer: Any
    ) -> Iterator[ConsumerRecord]:
        native = NativeBatch(bytes(batch._buffer))  # the batch's own bytes
        self.bytes_read += batch.size_in_bytes
        topic, partition, epoch = tp.topic, tp.partition, self.leader_epoch
        plain = key_deserializer is None and value_deserializer is None
        for record in native:
            key, value, headers = record.key, record.value, record.headers
            key_size = len(key) if key is not None else -1
            value_size = len(value) if value is not None else -1
            if not plain:
                key = self._deserialize(key_deserializer, topic, headers, key)
                value = self._deserialize(value_deserializer, topic, headers, value)
            header_size = (
                sum(len(k.encode("utf-8")) + (len(v) if v is not None else 0) for k, v in headers)
                if headers
                else -1
            )
            self.records_read += 1
            self.next_fetch_offset = record.offset + 1
            yield ConsumerRecord(
                topic,
                partition,
                epoch,
                record.offset,
                record.timestamp,
                record.timestamp_type,
                key,
                value,
                headers,
                None,
                key_size,
                value_size,
                header_size,
            )

    def _legacy_records(
        self, tp: Any, batch: Any, key_deserializer: Any, value_deserializer: Any
    ) -> Iterator[ConsumerRecord]:
        for record in batch:
            if self.check_crcs and not record.validate_crc():
                raise kafka_errors.CorruptRecordError(
                    f"Record for partition {tp} at offset {record.offset} failed crc check"
                )
            key = self._deserialize(key_deserializer, tp.topic, record.headers, record.key)
            value = self._deserialize(value_deserializer, tp.topic, record.headers, record.value)
            self.records_read += 1
            self.bytes_read += record.size_in_bytes
            self.next_fetch_offset = record.offset + 1
            yield ConsumerRecord(
                tp.topic,
                tp.partition,
                self.leader_epoch,
                record.offset,
                record.timestamp,
                record.timestamp_type,
                key,
                value,
                record.headers,
                record.checksum,
                len(record.key) if record.key is not None else -1,
                len(record.value) if record.value is not None else -1,
                -1,
            )


def use_native_records(consumer: KafkaConsumer) -> None:
    """Make ``consumer`` read fetched batches with :class:`NativePartitionRecords`."""
    fetcher = consumer._fetcher  # kafka-python offers no public hook
    if not isinstance(getattr(fetcher, "PartitionRecords", None), type):
        raise RuntimeError("this kafka-python has no Fetcher.PartitionRecords to replace")
    fetcher.PartitionRecords = NativePartitionRecords

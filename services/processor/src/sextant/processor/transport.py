"""faust's Kafka transport, with two costs of its consumer taken out.

- *Fetch sizes.* faust builds its aiokafka consumer with ``fetch_min_bytes=1``: the broker
  answers each fetch as soon as one record is there, so under a steady load the consumer
  fetches, and hands a few records from its thread to the event loop, about 150 times a
  second. Asking for a fuller answer (bounded by a short wait) makes that about 20
  (``python -m bench.consumer_fetch``).
- *One wait per fetched batch.* faust's loop that hands records to the streams
  (``Consumer._drain_messages``) waits for each record's delivery with
  ``Service.wait_first``, which makes four tasks per record (the delivery, the flow's
  suspension, the consumer's stop and crash) and so costs the event loop a full turn per
  record. Here the delivery of a whole fetched batch is one task, raced against the same
  three, so a suspended flow (a rebalance) still cancels a delivery that is blocked.
  A worker catches up about 1.5 times as fast with six metrics, 1.7 with none
  (``python -m bench.processor_consumer``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from functools import cached_property
from typing import Any, cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport
from faust.types import TP
from faust.utils.functional import consecutive_numbers
from mode import Service, ServiceT

_YIELD_EVERY = 100
"""Records handed over before the loop lets other coroutines run (as faust does)."""
_FETCH_WAIT_S = 0.02
"""Longest wait for records (faust waits 1 s). A partition whose stream buffer is full is
left out of the fetch until the buffer drains, and a fetch that is waiting does not notice
when it drains: a batch handed over at once fills the buffers often. The price: an idle
worker polls 50 times a second, 5.3 % of a core against faust's 3.3 % (0.1 s: 3.6 %, but
catching up with no metric fell from 19,180 to 15,278 events/s)."""


class BatchDrainingConsumer(Consumer):
    """faust's aiokafka consumer whose drain loop waits once per fetched batch."""

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        """faust's loop (``faust.transport.consumer.Consumer._drain_messages``), its
        per-record wait moved out to the batch; see the module docstring."""
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                await self._until_fetchable()
                records = cast(AsyncIterator[Any], self.getmany(timeout=_FETCH_WAIT_S))
                # getmany can be called in a loop without ever releasing the event loop.
                await self.sleep(0)
                if not self.should_stop:
                    await self.wait_first(self._deliver(records), self.suspend_flow.wait())
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _until_fetchable(self) -> None:
        """Wait while every partition waits for its stream buffer to drain (faust's getmany
        would sleep a whole second then)."""
        while (
            self._buffered_partitions and not self._get_active_partitions() and not self.should_stop
        ):
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), timeout=1.0)

    def on_buffer_drop(self, tp: TP) -> None:
        """A stream buffer of ``tp`` has room again (faust fetches ``tp`` again)."""
        super().on_buffer_drop(tp)
        self._drained.set()

    def _new_offset(self, tp: TP) -> int | None:
        """The offset to commit for ``tp``: faust's, then on over every further run of
        acknowledged offsets that faust's own rule would take one commit at a time.

        faust commits the first run of consecutive acknowledged offsets, and passes over a
        single unacknowledged offset between two runs, but only one run per commit. A
        partition whose acknowledged offsets alternate with held-back ones (records refused
        out of order and fetched again) then commits one record per commit interval: seen
        creeping at one record a second, hundreds behind, long after the load had stopped.
        """
        offset: int | None = super()._new_offset(tp)
        acked: list[int] = self._acked[tp]
        while offset is not None and acked and acked[0] - offset <= 1:
            run = next(consecutive_numbers(acked))
            del acked[: len(run)]
            self._acked_index[tp].difference_update(run)
            offset = max(offset, run[-1] + 1)
        return offset

    @cached_property
    def _drained(self) -> asyncio.Event:
        return asyncio.Event()

    async def _deliver(self, records: AsyncIterator[Any]) -> None:
        """Hand each record to the streams, in order, as faust's loop does per record."""
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        sought: set[TP] = set()
        since_yield = 0
        async for tp, message in records:
            since_yield += 1
            if since_yield > _YIELD_EVERY:
                await asyncio.sleep(0)
                since_yield = 0
            if tp in sought:
                continue  # fetched again from where the seek points
            offset = message.offset
            last = read_offset[tp]
            if last is not None and offset < last:
                continue  # read already (faust drops these too)
            if offset - (last or 0) > 1 and last and acks_enabled_for(message.topic):
                # A gap (transaction markers, compaction): commits may pass over it.
                await asyncio.shield(self._add_gap(tp, last + 1, offset))
            if self._commit_every is not None and self._n_acked >= self._commit_every:
                self._n_acked = 0
                await asyncio.shield(self.commit())
            await self.callback(message)
            if read_offset[tp] != last:
                # An agent sought the partition back meanwhile (seek_wait sets the read
                # offset). Delivering the rest of this batch would move the read offset past
                # the seek, and the records fetched again would be dropped as read already:
                # never acknowledged, they would hold the partition's commits back for good.
                sought.add(tp)
                continue
            read_offset[tp] = offset


def tuned_transport(app: faust.App, fetch_min_bytes: int, fetch_max_wait_ms: int) -> Transport:
    """A transport for ``app`` whose worker consumer drains whole batches and fetches at
    least ``fetch_min_bytes`` (or waits ``fetch_max_wait_ms``); set it as ``app.transport``
    before the app's first topic is made."""

    class TunedThread(AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Transport) -> Any:
            consumer = super()._create_worker_consumer(transport)
            # Read by AIOKafkaConsumer.start() when it builds its fetcher.
            consumer._fetch_min_bytes = fetch_min_bytes
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    class TunedConsumer(BatchDrainingConsumer):
        def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
            return TunedThread(self, loop=self.loop, beacon=self.beacon)

    class TunedTransport(Transport):
        Consumer = TunedConsumer

    return TunedTransport(app.conf.broker_consumer, app)

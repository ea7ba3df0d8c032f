"""The processor's one module over faust: the internals it relies on, and its record router."""

from __future__ import annotations

from collections import namedtuple

import pytest
from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP

from sextant.processor.faust_log import FaustInternalsChangedError, Router, check_internals


def test_every_faust_internal_the_processor_relies_on_is_there() -> None:
    """Fails loudly when a faust, mode or aiokafka release changes one of them."""
    check_internals()


def test_a_changed_internal_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(FaustConsumer, "_new_offset")
    with pytest.raises(FaustInternalsChangedError, match="_new_offset"):
        check_internals()


FetchedPartition = namedtuple("FetchedPartition", "topic partition")
"""The partition a fetched message carries: aiokafka's, not faust's ``TP``."""


class _Message:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self.tp = FetchedPartition(topic, partition)


def _router(topic: str) -> tuple[Router, list[TP], list[TP]]:
    router = Router()
    full: list[TP] = []
    room: list[TP] = []
    router.add(topic, full.append, room.append)
    return router, full, room


def test_records_of_the_stages_topics_are_buffered_and_others_left_to_faust() -> None:
    router, _, _ = _router("events")
    delivery = router.fetched()
    assert delivery.route(_Message("events", 0, 7), 1.0)
    assert not delivery.route(_Message("changelog", 0, 3), 1.0)
    buffer = router.buffers["events"]
    assert [m.offset for m in buffer.take(10)] == [7]
    assert router.delivered[TP("events", 0)] == (7, 1.0)
    assert router.lowest[TP("events", 0)] == 7


def test_a_seek_during_a_batch_leaves_the_rest_of_its_partition_to_the_fetch_again() -> None:
    """A partition sought back while a fetched batch is handed over: the batch's later
    records of that partition are not buffered (they come again from the seek), and what was
    buffered of it is dropped; other partitions go on."""
    router, _, _ = _router("events")
    sought = TP("events", 0)
    delivery = router.fetched()
    for offset in (10, 11):
        delivery.route(_Message("events", 0, offset), 0.0)
        delivery.route(_Message("events", 1, 100 + offset), 0.0)
    router.sought(sought)
    for offset in (12, 13):
        delivery.route(_Message("events", 0, offset), 0.0)
        delivery.route(_Message("events", 1, 100 + offset), 0.0)
    taken = router.buffers["events"].take(100)
    assert [m.offset for m in taken if m.partition == 0] == []
    assert [m.offset for m in taken if m.partition == 1] == [110, 111, 112, 113]
    stale = router.fetched()  # handed over before the consumer's thread moved the position
    stale.route(_Message("events", 0, 14), 0.0)
    router.seeks_applied([sought])
    router.fetch_handed_over()
    later = router.fetched()  # fetched after the seek: from the sought offset
    later.route(_Message("events", 0, 5), 0.0)
    assert [m.offset for m in router.buffers["events"].take(100)] == [5]


def test_a_fetch_that_spans_a_seek_keeps_the_records_from_the_sought_offset() -> None:
    """The drain loop asks for a fetch, which waits for records; meanwhile the partition is
    sought back and the thread fetches from the sought offset. Those records are the ones
    the seek asked for: dropping them would leave a gap nothing fills."""
    router, _, _ = _router("events")
    sought = TP("events", 0)
    waiting = router.fetched()  # asked for before the seek
    router.sought(sought)
    router.seeks_applied([sought])
    router.fetch_handed_over()  # the thread returns the records of the new position
    for offset in (5, 6, 7):
        waiting.route(_Message("events", 0, offset), 0.0)
    assert [m.offset for m in router.buffers["events"].take(100)] == [5, 6, 7]


def test_a_full_buffer_takes_its_partition_out_of_the_fetch_until_it_drains() -> None:
    """Through faust's own ``TP`` (its partition sets hold nothing else), whatever the
    fetch's partition objects are."""
    router, full, room = _router("events")
    buffer = router.buffers["events"]
    buffer.batch_size = 2
    delivery = router.fetched()
    for offset in range(4):
        delivery.route(_Message("events", 3, offset), 0.0)
    assert full == [TP("events", 3)]
    assert all(type(tp) is TP for tp in full)  # faust asserts it
    assert router.full() == {TP("events", 3)}
    assert buffer.enough.is_set()
    buffer.take(2)
    buffer.take(2)
    assert room == [TP("events", 3)]
    assert all(type(tp) is TP for tp in room)
    assert router.room.is_set()
    assert not router.full()

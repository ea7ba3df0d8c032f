"""The buffer log: every buffered event loads back once, whatever the flush sizes and
wherever a flush's writes stop; small segments merge, so segments and rewrites stay few."""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass, field

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from sextant.processor.buffer_log import BufferLog, Entry, Owner
from tests.unit.test_processor_partition import Store

PREFIX = "0|l|"


@dataclass
class _Buffer:
    entries: list[Entry] = field(default_factory=list)


def _fill(log: BufferLog, buffers: dict[Owner, _Buffer], offset: int, count: int) -> int:
    for _ in range(count):
        owner = ("p", f"u{offset % 7}")
        entry = (1000.0 + offset, offset, (("m:count", 1.0),))
        buffers.setdefault(owner, _Buffer()).entries.append(entry)
        log.append(owner, entry)
        offset += 1
    return offset


def _loaded(store: Store) -> dict[Owner, list[Entry]]:
    return BufferLog(PREFIX).load(store.items_with_prefix(PREFIX))


def _expected(buffers: dict[Owner, _Buffer]) -> dict[Owner, list[Entry]]:
    return {owner: b.entries for owner, b in buffers.items() if b.entries}


@settings(max_examples=60, deadline=None)
@given(
    flushes=st.lists(st.integers(0, 300), min_size=1, max_size=40),
    crash=st.integers(0, 10_000),
    rewrite_at=st.integers(-1, 40),
)
def test_every_event_loads_back_once_wherever_a_flush_stops(
    flushes: list[int], crash: int, rewrite_at: int
) -> None:
    log, store, buffers = BufferLog(PREFIX, max_entries=500), Store(), {}
    offset = 0
    for i, count in enumerate(flushes):
        persisted = {(owner, e[1]) for owner, b in buffers.items() for e in b.entries}
        offset = _fill(log, buffers, offset, count)
        if i == rewrite_at:
            log.rewrite_all()
        writes = log.flush(buffers)
        if i == len(flushes) - 1:
            # The last flush stops after any prefix of its writes: what earlier flushes wrote
            # is there, each event once, and nothing else.
            stop = crash % (len(writes) + 1)
            store.write(writes[:stop])
            found = [(owner, e[1]) for owner, entries in _loaded(store).items() for e in entries]
            assert len(found) == len(set(found))
            everything = {(owner, e[1]) for owner, b in buffers.items() for e in b.entries}
            assert persisted <= set(found) <= everything
            writes = writes[stop:]
        store.write(writes)
    assert _loaded(store) == _expected(buffers)
    assert set(store) == {log.key(s) for s in log.segments}


def test_many_small_flushes_make_few_segments_and_few_rewrites() -> None:
    log, store, buffers = BufferLog(PREFIX, max_entries=2_000), Store(), {}
    offset, written = 0, 0
    per_flush, flushes = 40, 2_500
    for _ in range(flushes):
        offset = _fill(log, buffers, offset, per_flush)
        writes = log.flush(buffers)
        written += sum(len(value) for _, value in writes if value is not None)
        store.write(writes)
    events = per_flush * flushes
    assert _loaded(store) == _expected(buffers)
    # Merged segments hold at least half of max_entries (two halves would have merged).
    assert len(store) <= 2 * events / 2_000 + math.log2(2_000 / per_flush) + 2
    once = len(log._write([(("p", "u0"), (1000.0, 10**5, {"m:count": 1.0}))])[0][1] or b"")
    # Each event is written again about log2(2,000 / 40) = 5.6 times, not once per flush.
    assert written / (events * once) < math.log2(2_000 / per_flush) + 2


def test_a_segment_goes_once_all_of_its_events_are_behind_the_horizon() -> None:
    log, store, buffers = BufferLog(PREFIX, max_entries=10), Store(), {}
    offset = _fill(log, buffers, 0, 10)  # times 1000 to 1009: one full segment
    store.write(log.flush(buffers))
    _fill(log, buffers, offset, 3)  # times 1010 to 1012
    store.write(log.flush(buffers))
    assert len(store) == 2
    store.write(log.prune({"p": 1010.0}))
    assert len(store) == 1
    store.write(log.prune({"other": 5000.0}))
    assert len(store) == 1
    store.write(log.prune({"p": 1013.0}))
    assert not store


def test_contributions_load_as_pairs_whichever_form_was_written() -> None:
    store = Store()
    owner = ["p", "u1"]
    # An earlier version wrote each event's contributions as an object.
    store[f"{PREFIX}{0:012d}"] = orjson.dumps([[owner, [1000.0, 1, {"m:count": 1.0}]]])
    store[f"{PREFIX}{1:012d}"] = orjson.dumps([[owner, [1001.0, 2, [["m:sum", 2.5]]]]])
    loaded = _loaded(store)
    assert loaded == {
        ("p", "u1"): [(1000.0, 1, (("m:count", 1.0),)), (1001.0, 2, (("m:sum", 2.5),))]
    }
    # Of atoms and tuples only: the garbage collector stops tracking them (a collection per
    # level of nesting), however many are kept. A tuple holding a dict it tracks for good.
    for _ in range(3):
        gc.collect()
    assert not any(gc.is_tracked(entry) for entry in loaded[("p", "u1")])

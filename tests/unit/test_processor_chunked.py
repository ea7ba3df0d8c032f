"""Chunked entries: what a restart loads is what was written, the store stays bounded, and a
rewrite leaves nothing of a deleted item behind."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from sextant.processor.chunked import ChunkedEntries

Key = tuple[str, ...]

# One flush: items set (to a value) or deleted (None), and whether to rewrite everything.
flushes = st.lists(
    st.tuples(
        st.dictionaries(st.sampled_from([f"u{i}" for i in range(30)]),
                        st.one_of(st.none(), st.integers(0, 9)), max_size=12),
        st.booleans(),
    ),
    min_size=1,
    max_size=25,
)  # fmt: skip


def fresh(
    store: dict[str, bytes], max_bytes: int = 1 << 20
) -> tuple[ChunkedEntries[Key], dict[Key, Any]]:
    entries: ChunkedEntries[Key] = ChunkedEntries(
        "0|e|", tuple, max_items=4, max_bytes=max_bytes, slack=6
    )
    return entries, entries.load(store.items())


def write(store: dict[str, bytes], writes: list[tuple[str, bytes | None]]) -> None:
    for key, value in writes:
        if value is None:
            store.pop(key, None)
        else:
            store[key] = value


def flush(entries: ChunkedEntries[Key], current: dict[Key, Any], changed: set[Key]) -> Any:
    return entries.flush((k, current.get(k)) for k in changed | entries.due())


@settings(max_examples=200, deadline=None)
@given(steps=flushes)
def test_a_restart_loads_the_current_values_and_the_store_stays_bounded(
    steps: list[tuple[dict[str, int | None], bool]],
) -> None:
    store: dict[str, bytes] = {}
    entries, current = fresh(store)
    for changes, rewrite in steps:
        changed = set()
        for name, value in changes.items():
            key = ("s", "p", name)
            changed.add(key)
            if value is None:
                current.pop(key, None)
            else:
                current[key] = [value]
        if rewrite:
            entries.rewrite_all()
        write(store, flush(entries, current, changed))
        restored, values = fresh(store)
        assert values == current
        stored = sum(restored.chunks[s].written for s in restored.chunks)
        assert stored <= 2 * len(current) + 6 + len(changed) + 4
        entries, current = restored, values  # and go on from what a restart loads


@settings(max_examples=200, deadline=None)
@given(steps=flushes, crash_at=st.integers(0, 24), keep=st.integers(0, 12))
def test_a_crash_after_any_prefix_of_a_flush_leaves_each_item_at_a_value_it_had(
    steps: list[tuple[dict[str, int | None], bool]], crash_at: int, keep: int
) -> None:
    store: dict[str, bytes] = {}
    entries, current = fresh(store)
    before: dict[Key, Any] = {}
    for i, (changes, rewrite) in enumerate(steps):
        before = dict(current)
        for name, value in changes.items():
            if value is None:
                current.pop(("s", "p", name), None)
            else:
                current[("s", "p", name)] = [value]
        if rewrite:
            entries.rewrite_all()
        writes = flush(entries, current, {("s", "p", n) for n in changes})
        if i == min(crash_at, len(steps) - 1):
            write(store, writes[:keep])
            break
        write(store, writes)
    _, values = fresh(store)
    for key in before.keys() | current.keys() | values.keys():
        assert values.get(key) in (before.get(key), current.get(key)), key


def test_a_rewrite_leaves_no_trace_of_a_deleted_item() -> None:
    store: dict[str, bytes] = {}
    entries, current = fresh(store)
    current.update({("s", "p", f"u{i}"): [i] for i in range(10)})
    write(store, flush(entries, current, set(current)))
    del current[("s", "p", "u3")]
    entries.rewrite_all()
    write(store, flush(entries, current, {("s", "p", "u3")}))
    assert not [v for v in store.values() if b'"u3"' in v]
    assert fresh(store)[1] == current


def test_items_written_again_free_their_old_chunks() -> None:
    store: dict[str, bytes] = {}
    entries, current = fresh(store)
    keys = {("s", "p", f"u{i}") for i in range(8)}
    for value in range(50):
        current.update({key: [value] for key in keys})
        write(store, flush(entries, current, keys))
    assert len(store) == 2  # the last flush's chunks, four items each
    assert fresh(store)[1] == current


def test_dead_entries_do_not_pile_up() -> None:
    """Each old chunk keeps one current item of four; the next flush writes those again."""
    store: dict[str, bytes] = {}
    entries, current = fresh(store)
    keys = [("s", "p", f"u{i}") for i in range(40)]
    current.update({key: [1] for key in keys})
    write(store, flush(entries, current, set(keys)))
    gone = {key for i, key in enumerate(keys) if i % 4}
    for key in gone:
        del current[key]
    write(store, flush(entries, current, gone))
    write(store, flush(entries, current, set()))
    restored, values = fresh(store)
    assert values == current
    assert sum(c.written for c in restored.chunks.values()) <= 2 * len(current) + 6


def test_a_chunk_stays_under_its_size_unless_one_item_is_larger() -> None:
    store: dict[str, bytes] = {}
    entries, current = fresh(store, max_bytes=200)
    current.update({("s", "p", f"u{i}"): ["x" * 60] for i in range(4)})
    current[("s", "p", "big")] = ["x" * 500]
    write(store, flush(entries, current, set(current)))
    oversized = [orjson.loads(v) for v in store.values() if len(v) > 200]
    assert [[item[0] for item in chunk] for chunk in oversized] == [[["s", "p", "big"]]]
    assert fresh(store, max_bytes=200)[1] == current

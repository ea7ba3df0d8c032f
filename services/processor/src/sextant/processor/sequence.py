"""Offsets in sequence: both stages apply a partition's records strictly in offset order.

After a rebalance faust seeks to the committed offsets, yet a record fetched before the
rebalance can still be delivered; faust then takes the offsets below it for a gap and drops
them as already read. A stage that applied that record would skip the dropped ones for good,
so each stage keeps the offset it has applied up to and admits only the next one.
"""

from __future__ import annotations

from enum import Enum


class Outcome(Enum):
    """What a stage does with a record, given the offset it has applied up to."""

    APPLIED = "applied"
    """The next offset (or the first a fresh state sees): apply it."""
    REPLAYED = "replayed"
    """At or below the applied offset: already in the state, skip it."""
    OUT_OF_ORDER = "out_of_order"
    """Past a missing offset: do not apply or acknowledge it; fetch again from the gap."""


def admit(last_offset: int, offset: int) -> Outcome:
    """The outcome for ``offset`` when every offset up to ``last_offset`` is applied."""
    if offset <= last_offset:
        return Outcome.REPLAYED
    if last_offset >= 0 and offset != last_offset + 1:
        return Outcome.OUT_OF_ORDER
    return Outcome.APPLIED

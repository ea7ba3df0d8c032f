"""Forgetting deleted persons: which passes over its state each partition of a stage owes.

A person's deletion is a ``person_deletion`` document on the config plane (ids as
:func:`~sextant.schemas.config.person_hash` digests only), which the processor follows like
any other document: it is the command. While the deletion is *active* each stage removes the
person's entries from every partition it owns, in a flush of its own, so the removals reach
the changelog with the partition's checkpoint and the changelog gets a tombstone for each.

Two passes per partition: one as soon as the request is seen, and one once ``settle_seconds``
have passed since the request (by then every collector drops the person's events, and events
already in flight when the request came have been applied). The second pass reports the
partition done (``person_deletions``). Passes are remembered in memory only: a restart or a
rebalance makes a partition pass again over an active deletion, which removes nothing twice
(the entries are gone) and, while the collectors suppress the person's ids, nothing new. A
deletion stays active until its suppression ends, or until it has settled if it is shorter,
so a person who comes back after the suppression starts afresh and is not forgotten again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sextant.processor.log import Outputs
from sextant.schemas.config import PersonDeletion, person_hash
from sextant.schemas.identity import DeletionProgress

Remover = Callable[[str, Callable[[str], bool]], int]
"""A partition state's ``forget(project, names)``: removes the entries, returns how many."""
Passes = list[tuple["Pass", int]]


@dataclass(frozen=True)
class Forget:
    """One active deletion, as a stage applies it."""

    request_id: str
    project_id: str
    hashes: frozenset[str]
    settles_at: float


def _picker(project_id: str, hashes: frozenset[str]) -> Callable[[str], bool]:
    """Picks the ids of ``project_id`` whose digest is one of ``hashes``."""
    return lambda distinct_id: person_hash(project_id, distinct_id) in hashes


@dataclass(frozen=True)
class Pass:
    """A pass a partition owes: ``final`` passes report the partition done."""

    forget: Forget
    final: bool


class Forgetting:
    """The passes the partitions of one stage owe (see the module docstring)."""

    def __init__(
        self,
        stage: str,
        deletions: Callable[[], Iterable[PersonDeletion]],
        settle_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stage = stage
        self.deletions = deletions
        self.settle_seconds = settle_seconds
        self.clock = clock
        self._passed: dict[tuple[int, str], bool] = {}
        """(partition, request) → whether its final pass was made."""
        self._cached: tuple[float, list[Forget]] = (-1.0, [])

    def _active(self, now: float) -> list[Forget]:
        # Stages ask at every flush; the deletions on the config plane only grow.
        if now - self._cached[0] < 1.0:
            return self._cached[1]
        active = []
        for request in self.deletions():
            settles_at = request.requested_at.timestamp() + self.settle_seconds
            if now < max(request.suppress_until.timestamp(), settles_at):
                active.append(
                    Forget(request.id, request.project_id, frozenset(request.id_hashes), settles_at)
                )
        self._cached = (now, active)
        return active

    def due(self, partition: int) -> list[Pass]:
        """The passes ``partition`` owes now, oldest request first."""
        now = self.clock()
        owed = []
        for forget in self._active(now):
            final = now >= forget.settles_at
            made = self._passed.get((partition, forget.request_id))
            if made is None or (final and not made):
                owed.append(Pass(forget, final))
        return owed

    def apply(self, partition: int, remove: Remover) -> Passes:
        """Make the passes ``partition`` owes on its state (in memory: the stage's next table
        write persists them); what :meth:`persisted` needs afterwards."""
        by_project: dict[str, list[Pass]] = {}
        for owed in self.due(partition):
            by_project.setdefault(owed.forget.project_id, []).append(owed)
        applied: Passes = []
        for project, passes in by_project.items():
            # One scan of the project's entries for all its deletions due (after a restart,
            # every active one): each id is digested once.
            hashes = frozenset().union(*(owed.forget.hashes for owed in passes))
            removed = remove(project, _picker(project, hashes))
            applied.extend((owed, removed) for owed in passes)
        return applied

    async def persisted(
        self, partition: int, applied: Passes, outputs: Outputs, topic: str
    ) -> None:
        """The removals of ``applied`` are written to the partition's changelog: remember the
        passes, and report the final ones."""
        for made, removed in applied:
            key = (partition, made.forget.request_id)
            self._passed[key] = self._passed.get(key, False) or made.final
            if made.final:
                progress = self.progress(partition, made, removed)
                await outputs.send(
                    topic, progress.kafka_key().encode(), progress.model_dump_json().encode()
                )

    def forget_partition(self, partition: int) -> None:
        """The partition's state was loaded again: it owes every active deletion a pass."""
        self._passed = {k: v for k, v in self._passed.items() if k[0] != partition}

    def progress(self, partition: int, made: Pass, removed: int) -> DeletionProgress:
        return DeletionProgress(
            request_id=made.forget.request_id,
            project_id=made.forget.project_id,
            stage=self.stage,
            partition=partition,
            removed=removed,
            done_at=datetime.now(UTC),
        )

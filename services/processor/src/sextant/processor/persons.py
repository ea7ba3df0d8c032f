"""Persons of one ``identities`` partition: union of ids with a deterministic person id.

Every project's edges are on one partition, in order, so applying them in offset order gives
the same persons on every worker and after every restart. A person is a set of ids, named by
one of them (``person_id``); its *known* ids are those an edge named as a target (a
``userId`` given by identify or alias). A person with a known id is *identified*.

The rules (PostHog's and Segment's guards):

* a junk id (``sextant.schemas.identity.JUNK_IDS`` and the project's own) is never merged;
* ``identify``: the source's person joins the target's, unless it is identified already (two
  known users who shared an anonymous id stay two persons);
* ``alias``: the two persons become one unless both are identified;
* ``merge`` (``$merge_dangerously``, admin): the two persons become one;
* a merge that would give a person more than ``max_ids`` ids is refused;
* ``split``: every id of the target's person becomes a person of its own.

Which name survives a merge: the identified person's; of two identified (or two anonymous)
persons, the target's. So an anonymous visitor who signs up becomes the person named by the
``userId``, and the events sent with the ``userId`` need no override.

State entries (``<partition>|...`` in the resolver's table): ``p|<project>\\x1f<person_id>``
→ ``{"ids": [...], "known": [...]}``, and ``c`` → the offset applied up to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from sextant.processor.sequence import Outcome, admit
from sextant.schemas.identity import (
    Decision,
    EdgeKind,
    IdentityDecision,
    IdentityEdge,
    PersonOverride,
    is_junk,
)

SEP = "\x1f"
Junk = Callable[[str], frozenset[str]]
"""The project's own junk ids (case-folded)."""


@dataclass
class Person:
    ids: list[str]
    known: set[str]

    def to_bytes(self) -> bytes:
        return orjson.dumps({"ids": self.ids, "known": sorted(self.known)})

    @classmethod
    def from_bytes(cls, value: bytes) -> Person:
        data = orjson.loads(value)
        return cls(list(data["ids"]), set(data["known"]))


@dataclass
class Applied:
    """What one batch of edges changed: to send, then to persist."""

    overrides: list[PersonOverride] = field(default_factory=list)
    decisions: list[IdentityDecision] = field(default_factory=list)


@dataclass
class ProjectPersons:
    persons: dict[str, Person] = field(default_factory=dict)
    """Person id → person (only persons with more than their own id, or a known id)."""
    person_of: dict[str, str] = field(default_factory=dict)

    def person(self, distinct_id: str) -> tuple[str, Person]:
        """The id's person (a fresh one of its own if no edge joined it yet)."""
        person_id = self.person_of.get(distinct_id, distinct_id)
        found = self.persons.get(person_id)
        return person_id, found if found is not None else Person([distinct_id], set())


class PersonsState:
    """The persons of one ``identities`` partition (see the module docstring)."""

    def __init__(self, partition: int, max_ids: int) -> None:
        self.partition = partition
        self.max_ids = max_ids
        self.projects: dict[str, ProjectPersons] = {}
        self.last_offset = -1
        self._persisted_offset = -1
        self._dirty: set[tuple[str, str]] = set()
        self._deleted: set[tuple[str, str]] = set()

    @property
    def expected_offset(self) -> int:
        return self.last_offset + 1

    def skip_to(self, offset: int) -> None:
        self.last_offset = max(self.last_offset, offset - 1)

    def admit(self, offset: int) -> Outcome:
        outcome = admit(self.last_offset, offset)
        if outcome is Outcome.APPLIED:
            self.last_offset = offset
        return outcome

    # state ------------------------------------------------------------------------------------

    def _key(self, project: str, person_id: str) -> str:
        return f"{self.partition}|p|{project}{SEP}{person_id}"

    def load(self, items: Iterator[tuple[str, bytes]]) -> None:
        for key, value in items:
            _, kind, *rest = key.split("|", 2)
            if kind == "c":
                self.last_offset = self._persisted_offset = int(orjson.loads(value))
            elif kind == "p":
                project, person_id = rest[0].split(SEP, 1)
                self._put(project, person_id, Person.from_bytes(value))

    def _put(self, project: str, person_id: str, person: Person) -> None:
        persons = self.projects.setdefault(project, ProjectPersons())
        persons.persons[person_id] = person
        for member in person.ids:
            persons.person_of[member] = person_id
        self._dirty.add((project, person_id))
        self._deleted.discard((project, person_id))

    def _drop(self, project: str, person_id: str) -> None:
        persons = self.projects[project]
        persons.persons.pop(person_id, None)
        self._deleted.add((project, person_id))
        self._dirty.discard((project, person_id))

    def writes(self) -> list[tuple[str, bytes | None]]:
        """The table writes since the last call: persons, then the offset they cover."""
        out: list[tuple[str, bytes | None]] = [
            (self._key(project, pid), None) for project, pid in sorted(self._deleted)
        ]
        for project, pid in sorted(self._dirty):
            out.append((self._key(project, pid), self.projects[project].persons[pid].to_bytes()))
        self._dirty.clear()
        self._deleted.clear()
        if self.last_offset > self._persisted_offset:
            self._persisted_offset = self.last_offset
            out.append((f"{self.partition}|c", orjson.dumps(self.last_offset)))
        return out

    def forget(self, project: str, names: Callable[[str], bool]) -> int:
        """Forget every person of ``project`` with an id ``names`` picks (the whole person:
        the resolver may know ids the deletion request did not), so a later event under one
        of those ids starts a fresh person. Returns how many persons were forgotten."""
        persons = self.projects.get(project)
        if persons is None:
            return 0
        gone = [pid for pid, person in persons.persons.items() if any(map(names, person.ids))]
        for person_id in gone:
            for member in persons.persons[person_id].ids:
                persons.person_of.pop(member, None)
            self._drop(project, person_id)
        return len(gone)

    def person_ids(self, project: str, distinct_id: str) -> list[str]:
        """Every id of ``distinct_id``'s person."""
        return list(self.projects.get(project, ProjectPersons()).person(distinct_id)[1].ids)

    # edges ------------------------------------------------------------------------------------

    def apply(self, offset: int, edge: IdentityEdge, junk: Junk, into: Applied) -> None:
        """Apply the edge at ``offset`` (admitted already); record what it did."""
        now = datetime.now(UTC)
        persons = self.projects.setdefault(edge.project_id, ProjectPersons())

        def decide(decision: Decision, reason: str, person_id: str, moved: list[str]) -> None:
            into.decisions.append(
                IdentityDecision(
                    project_id=edge.project_id,
                    edge_partition=self.partition,
                    edge_offset=offset,
                    kind=edge.kind,
                    source=edge.source,
                    target=edge.target,
                    decision=decision,
                    reason=reason,
                    person_id=person_id,
                    moved=moved,
                    message_id=edge.message_id,
                    timestamp=edge.timestamp,
                    decided_at=now,
                )
            )
            into.overrides.extend(
                PersonOverride(
                    project_id=edge.project_id,
                    distinct_id=moved_id,
                    person_id=persons.person_of.get(moved_id, moved_id),
                    version=offset,
                    updated_at=now,
                )
                for moved_id in moved
            )

        if edge.kind is EdgeKind.SPLIT:
            self._split(edge, persons, decide)
            return
        extra = junk(edge.project_id)
        target_id, target = persons.person(edge.target)
        if is_junk(edge.source, extra) or is_junk(edge.target, extra):
            decide(Decision.REFUSED, "junk id", target_id, [])
            return
        source_id, source = persons.person(edge.source)
        if source_id == target_id:
            if edge.kind is not EdgeKind.MERGE and edge.target not in target.known:
                target.known.add(edge.target)
                self._put(edge.project_id, target_id, target)
            return
        reason = self._refusal(edge.kind, source, target)
        if reason is None and len(source.ids) + len(target.ids) > self.max_ids:
            reason = f"more than {self.max_ids} ids in one person"
        if reason is not None:
            decide(Decision.REFUSED, reason, target_id, [])
            return
        if edge.kind is not EdgeKind.MERGE:
            target.known.add(edge.target)
        keep_id, keep, gone_id, gone = target_id, target, source_id, source
        if source.known and not target.known - {edge.target} and edge.kind is EdgeKind.ALIAS:
            # an identified person taking a fresh id keeps its name
            keep_id, keep, gone_id, gone = source_id, source, target_id, target
        keep.ids.extend(gone.ids)
        keep.known |= gone.known
        self._drop(edge.project_id, gone_id)
        self._put(edge.project_id, keep_id, keep)
        why = {
            EdgeKind.IDENTIFY: "anonymous id joins a known user",
            EdgeKind.ALIAS: "alias",
            EdgeKind.MERGE: "merge requested",
        }[edge.kind]
        decide(Decision.MERGED, why, keep_id, list(gone.ids))

    @staticmethod
    def _refusal(kind: EdgeKind, source: Person, target: Person) -> str | None:
        if kind is EdgeKind.IDENTIFY and source.known:
            return "the anonymous id's person is identified already"
        if kind is EdgeKind.ALIAS and source.known and target.known:
            return "both persons are identified"
        return None

    def _split(
        self,
        edge: IdentityEdge,
        persons: ProjectPersons,
        decide: Callable[[Decision, str, str, list[str]], None],
    ) -> None:
        person_id, person = persons.person(edge.target)
        if len(person.ids) < 2:
            decide(Decision.REFUSED, "the person has one id", person_id, [])
            return
        self._drop(edge.project_id, person_id)
        for member in person.ids:
            persons.person_of.pop(member, None)
            if member in person.known:
                self._put(edge.project_id, member, Person([member], {member}))
        decide(Decision.SPLIT, "split requested", person_id, list(person.ids))

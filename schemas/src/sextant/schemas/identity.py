"""Identity: edges between a project's ids, the overrides that map an id to its person, and
the record of every merge, refusal and split.

An *edge* says two ids are one person. The collector derives edges from the calls that say
so (Segment's ``identify`` with both ids and ``alias``, PostHog's ``$identify``,
``$create_alias`` and ``$merge_dangerously``, any event carrying both ``anonymousId`` and
``userId``); the gateway adds an admin ``split``. They go to ``identities``, keyed by project,
so one project's edges are one ordered stream, and the processor's resolver applies them.

A *person* is named by one of its ids (``person_id``). An id that no edge ever joined is its
own person and has no override; the resolver emits a :class:`PersonOverride` for every id
whose person changes, with the edge's offset as its version (one project's edges are on one
partition, so versions only grow). The warehouse keeps the newest override per id and
queries read ``coalesce(override, distinct_id)`` as the person.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sextant.schemas.topics import Topic

JUNK_IDS = frozenset(
    ("", "undefined", "null", "none", "nil", "nan", "0", "-1", "anonymous", "guest",
     "[object object]", "distinct_id", "not_authenticated", "true", "false", "email", "id")
)  # fmt: skip
"""Ids that clients send when they have none (compared trimmed and case-folded): never
merged, as PostHog refuses them. A project adds its own with ``Project.identity_junk_ids``."""

MERGE_DANGEROUSLY = "$merge_dangerously"


class EdgeKind(StrEnum):
    IDENTIFY = "identify"
    """``source`` (anonymous) joins ``target`` (known): refused if ``source``'s person is
    identified already."""
    ALIAS = "alias"
    """``source`` joins ``target``: refused if both persons are identified already."""
    MERGE = "merge"
    """``$merge_dangerously`` or an admin call: the two persons become one, whatever they are."""
    SPLIT = "split"
    """Admin: every id of ``target``'s person becomes a person of its own again."""


class IdentityEdge(BaseModel):
    """One edge on ``identities`` (key: ``project_id``)."""

    model_config = ConfigDict(frozen=True)

    project_id: str
    kind: EdgeKind
    source: str = ""
    target: str
    message_id: str = ""
    """The event that said so ("" for an admin call)."""
    timestamp: datetime


def is_junk(distinct_id: str, extra: frozenset[str] = frozenset()) -> bool:
    folded = distinct_id.strip().casefold()
    return folded in JUNK_IDS or folded in extra


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value)


def edge_of(
    *,
    call: str,
    event: str | None,
    user_id: str | None,
    anonymous_id: str | None,
    previous_id: str | None,
    properties: dict[str, Any],
) -> tuple[EdgeKind, str, str] | None:
    """The edge an event carries as (kind, source, target), or None.

    ``call`` is the envelope's type; ``event`` the track name.
    """
    if call == "alias" and user_id is not None and previous_id is not None:
        return EdgeKind.ALIAS, previous_id, user_id
    if call == "track" and event == MERGE_DANGEROUSLY and user_id is not None:
        alias = _text(properties.get("alias"))
        return (EdgeKind.MERGE, alias, user_id) if alias is not None else None
    if user_id is not None and anonymous_id is not None and user_id != anonymous_id:
        return EdgeKind.IDENTIFY, anonymous_id, user_id
    return None


class Decision(StrEnum):
    MERGED = "merged"
    REFUSED = "refused"
    SPLIT = "split"


class IdentityDecision(BaseModel):
    """What the resolver did with one edge that changed or could have changed a person:
    ``identity_decisions`` in the warehouse, one row per edge (its partition and offset)."""

    model_config = ConfigDict(frozen=True)

    project_id: str
    edge_partition: int
    edge_offset: int
    kind: EdgeKind
    source: str
    target: str
    decision: Decision
    reason: str
    """Why: ``anonymous joins known``, ``both identified``, ``junk id`` …"""
    person_id: str
    """The person that remains (merged), or the target's (refused, split)."""
    moved: list[str] = Field(default_factory=list)
    """The ids whose person changed."""
    message_id: str
    timestamp: datetime
    """The edge's event time."""
    decided_at: datetime

    def kafka_key(self) -> str:
        return self.project_id


class PersonOverride(BaseModel):
    """``distinct_id`` belongs to ``person_id`` from ``version`` on (``person_overrides``)."""

    model_config = ConfigDict(frozen=True)

    project_id: str
    distinct_id: str
    person_id: str
    version: int
    """The offset of the edge that decided it: the newest wins."""
    updated_at: datetime

    def kafka_key(self) -> str:
        return f"{self.project_id}:{self.distinct_id}"


class DeletionProgress(BaseModel):
    """One processor stage's partition has forgotten a deleted person (``person_deletions``):
    its state holds none of their ids, and its changelog has a tombstone for every entry that
    did. A person's deletion is done in the processor once every partition of every stage
    that keeps ids (:data:`FORGETTING_STAGES`, below) has reported."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    project_id: str
    stage: str
    partition: int
    removed: int
    """State entries removed by the pass (0: the partition held nothing of theirs; with other
    deletions of the project passing at the same time, theirs are counted too)."""
    done_at: datetime

    def kafka_key(self) -> str:
        return f"{self.project_id}:{self.request_id}:{self.stage}:{self.partition}"


FIRST_STAGE = "one"
RESOLVER_STAGE = "persons"
FORGETTING_STAGES: dict[str, Topic] = {
    FIRST_STAGE: Topic.EVENTS_RAW,
    RESOLVER_STAGE: Topic.IDENTITIES,
}
"""The processor stages whose state can hold a person's ids, and the topic whose partitions
they keep state for: stage one (first exposures, conversion users, experiment units) and the
identity resolver. Stage two merges aggregates only (sketches hold hashes, never ids)."""

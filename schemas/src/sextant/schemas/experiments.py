"""Experiments as the SDKs see them: the fields that decide which variant a unit gets.

:class:`sextant.schemas.config.Experiment` (the config document) extends
:class:`ExperimentDefinition` with what only the server needs (project, metrics, statistics).
The SDKs read definitions into :class:`ExperimentDefinition`, which ignores fields it does not
know: the gateway serves whole documents, the collector only the fields here
(:data:`ASSIGNMENT_FIELDS`).

This module is part of the SDK's wheel (see ``sdk/python/hatch_build.py``): it imports nothing
beyond the standard library and pydantic.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sextant.schemas.assignment import assign, running

__all__ = [
    "ASSIGNMENT_FIELDS",
    "IDENTIFIER",
    "ExperimentDefinition",
    "Identifier",
    "NamespaceRange",
    "Variant",
    "variant_of",
]

IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
"""Keys of projects, metrics, experiments and rules: safe in URLs, logs and topic keys."""

Identifier = Annotated[str, Field(pattern=IDENTIFIER)]


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Identifier
    name: str = ""
    weight: float = Field(ge=0, le=1)


class NamespaceRange(BaseModel):
    """A slice ``[start, end)`` of a namespace's hash space (GrowthBook's namespaces): two
    experiments whose slices of one namespace do not overlap never share a unit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Identifier
    start: float = Field(ge=0, le=1)
    end: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> NamespaceRange:
        if self.end <= self.start:
            raise ValueError("a namespace range's end must be above its start")
        return self


class ExperimentDefinition(BaseModel):
    """What assigning a unit to a variant needs, and nothing else.

    ``id`` is the experiment's key (and the seed when ``seed`` is unset); ``variants`` carry
    their weights; ``coverage`` is the share of units in the experiment; ``unit`` names the id
    that is hashed; the experiment runs from ``start`` (inclusive) to ``stop`` (exclusive);
    ``namespace`` keeps it to a slice of a namespace (mutual exclusion).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Identifier
    name: str = ""
    variants: list[Variant] = Field(min_length=2)
    coverage: float = Field(default=1.0, ge=0, le=1)
    seed: str | None = None
    hash_version: Literal[1, 2] = 2
    unit: Literal["userId", "anonymousId"] = "userId"
    start: datetime | None = None
    stop: datetime | None = None
    namespace: NamespaceRange | None = None


ASSIGNMENT_FIELDS: frozenset[str] = frozenset(ExperimentDefinition.model_fields)
"""The fields of an experiment document the collector serves to write keys."""


def variant_of(experiment: ExperimentDefinition, unit_id: str, now: datetime) -> Variant | None:
    """The unit's variant, or None when the experiment is not running or leaves the unit out.

    Assignment is :func:`sextant.schemas.assignment.assign`, GrowthBook-compatible: the seed
    defaults to the experiment's key, weights and coverage carve the hash range. Every SDK and
    the collector's PostHog flags give a unit its variant through this one function.
    """
    if not running(experiment.start, experiment.stop, now):
        return None
    index = assign(
        experiment.id,
        unit_id,
        [variant.weight for variant in experiment.variants],
        coverage=experiment.coverage,
        seed=experiment.seed,
        hash_version=experiment.hash_version,
        namespace=None
        if experiment.namespace is None
        else (experiment.namespace.id, experiment.namespace.start, experiment.namespace.end),
    )
    return None if index is None else experiment.variants[index]

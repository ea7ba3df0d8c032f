"""Every write of a feature gets a version and a revision, whoever writes it.

The admin API, ``sextant config apply``, and the gateway's rollout guards (a guardrail that
switches a rule off, a ramp that raises a coverage) all write features through
:func:`versioned`, so a feature's history is complete and any version can be restored.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sextant.core.config_plane import ConfigState
from sextant.schemas.config import ConfigDocument, Feature, FeatureRevision
from sextant.schemas.features import stage_change

__all__ = ["last_version", "revisions", "versioned", "versioned_delete"]


def revisions(state: ConfigState, project_id: str, feature_id: str) -> list[FeatureRevision]:
    """The feature's revisions, oldest first."""
    found = [r for r in state.of_kind(FeatureRevision, project_id) if r.feature == feature_id]
    return sorted(found, key=lambda r: r.version)


def last_version(state: ConfigState, project_id: str, feature_id: str) -> int:
    current = state.get(f"feature:{project_id}:{feature_id}")
    versions = [r.version for r in revisions(state, project_id, feature_id)]
    if isinstance(current, Feature):
        versions.append(current.version)
    return max(versions, default=0)


def versioned(
    state: ConfigState,
    documents: Sequence[ConfigDocument],
    *,
    by: str,
    comment: str = "",
    now: datetime,
) -> list[ConfigDocument]:
    """``documents`` as they are written: each feature with its next version (and followed by
    its revision); a feature that changes nothing is left out. Other documents pass as they
    are."""
    written: list[ConfigDocument] = []
    for document in documents:
        if not isinstance(document, Feature):
            written.append(document)
            continue
        previous = state.get(document.config_key())
        staged = stage_change(
            previous if isinstance(previous, Feature) else None,
            document,
            project_id=document.project_id,
            feature_id=document.id,
            last_version=last_version(state, document.project_id, document.id),
            by=by,
            comment=comment or document.comment,
            now=now,
        )
        if staged is not None:
            stored, revision = staged
            written += [d for d in (stored, revision) if d is not None]
    return written


def versioned_delete(
    state: ConfigState, project_id: str, feature_id: str, *, by: str, now: datetime
) -> FeatureRevision | None:
    """The revision that records the feature's deletion (``None`` if it does not exist)."""
    previous = state.get(f"feature:{project_id}:{feature_id}")
    if not isinstance(previous, Feature):
        return None
    staged = stage_change(
        previous,
        None,
        project_id=project_id,
        feature_id=feature_id,
        last_version=last_version(state, project_id, feature_id),
        by=by,
        comment="",
        now=now,
    )
    return None if staged is None else staged[1]

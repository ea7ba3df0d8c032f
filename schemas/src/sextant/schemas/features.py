"""Features as GrowthBook's SDKs read them, and their versions.

:func:`features_payload` turns a project's :class:`~sextant.schemas.config.Feature` documents
(and the experiments their rules point to) into the payload of GrowthBook's SDK endpoint
(``GET /api/features/{clientKey}``) for one environment. GrowthBook's SDKs and Sextant's
(:mod:`sextant.schemas.flags`) evaluate that same document, so they agree by construction:

* a force rule is ``{"force": value, "condition": …}``;
* a rollout is a force rule with ``range: [0, coverage]``, ``hashVersion: 2`` and its own
  seed: a half-open range, because GrowthBook's JavaScript SDK includes a unit whose hash equals
  ``coverage`` while its Python SDK does not, and both agree on ranges;
* an experiment rule is GrowthBook's experiment rule with the experiment's key, weights,
  seed, hash version, namespace and the unit's id as ``hashAttribute`` (``id`` for
  ``userId``, ``anonymousId`` otherwise), each variation's ``meta.key`` its variant id: the
  assignment Sextant's own ``variant_of`` gives;
* a running holdout (an experiment with ``holdout: true``) puts a first rule on every feature
  created from its start on: its held-out variant gets the default value, the rest passes
  through to the feature's own rules (GrowthBook's ``passthrough``).

A feature switched off in the environment, or without rules there, serves its default.

:func:`stage_change` gives a change its version and its :class:`FeatureRevision`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sextant.schemas.assignment import running
from sextant.schemas.config import (
    Experiment,
    ExperimentRule,
    Feature,
    FeatureRevision,
    ForceRule,
    RolloutRule,
)

__all__ = ["describe_changes", "features_payload", "rule_payload", "stage_change"]

HASH_ATTRIBUTE = {"userId": "id", "anonymousId": "anonymousId"}
"""The attribute GrowthBook's SDKs hash for each of Sextant's experiment units."""


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _experiment_rule(
    feature: Feature, rule: ExperimentRule, experiment: Experiment
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": rule.id,
        "key": experiment.id,
        "variations": [rule.values.get(v.id, feature.default_value) for v in experiment.variants],
        "weights": [v.weight for v in experiment.variants],
        "coverage": experiment.coverage if rule.coverage is None else rule.coverage,
        "hashAttribute": HASH_ATTRIBUTE[experiment.unit],
        "hashVersion": experiment.hash_version,
        "seed": experiment.seed or experiment.id,
        "meta": [{"key": v.id, "name": v.name or v.id} for v in experiment.variants],
        "name": experiment.name or experiment.id,
        "phase": "0",
    }
    if experiment.namespace is not None:
        ns = experiment.namespace
        payload["namespace"] = [ns.id, ns.start, ns.end]
    if rule.condition:
        payload["condition"] = rule.condition
    return payload


def rule_payload(
    feature: Feature,
    rule: ForceRule | RolloutRule | ExperimentRule,
    experiments: Mapping[str, Experiment],
    now: datetime,
) -> dict[str, Any] | None:
    """One rule in GrowthBook's format; ``None`` when it applies to no one now (switched
    off, or its experiment is unknown or not running)."""
    if not rule.enabled:
        return None
    if isinstance(rule, ExperimentRule):
        experiment = experiments.get(rule.experiment)
        if experiment is None or not running(experiment.start, experiment.stop, now):
            return None
        return _experiment_rule(feature, rule, experiment)
    payload: dict[str, Any] = {"id": rule.id}
    if rule.condition:
        payload["condition"] = rule.condition
    payload["force"] = rule.value
    if isinstance(rule, RolloutRule):
        payload["range"] = [0, rule.coverage]
        payload["hashAttribute"] = rule.hash_attribute
        payload["hashVersion"] = 2
        payload["seed"] = rule.seed or f"{feature.id}:{rule.id}"
    return payload


def _holdout_rule(feature: Feature, holdout: Experiment) -> dict[str, Any]:
    held, general = holdout.variants
    return {
        "id": f"holdout:{holdout.id}",
        "key": holdout.id,
        "variations": [feature.default_value, feature.default_value],
        "weights": [held.weight, general.weight],
        "hashAttribute": HASH_ATTRIBUTE[holdout.unit],
        "hashVersion": holdout.hash_version,
        "seed": holdout.seed or holdout.id,
        "meta": [{"key": held.id}, {"key": general.id, "passthrough": True}],
        "name": holdout.name or holdout.id,
        "phase": "0",
    }


def features_payload(
    features: Iterable[Feature],
    experiments: Iterable[Experiment],
    environment: str,
    now: datetime,
) -> dict[str, Any]:
    """GrowthBook's SDK payload of ``environment``: ``features`` by key, ``experiments``
    (none: Sextant has no visual experiments), ``dateUpdated``."""
    by_id = {e.id: e for e in experiments}
    holdouts = [
        e for e in by_id.values() if e.holdout and running(e.start, e.stop, now) and e.start
    ]
    payload: dict[str, Any] = {}
    updated: datetime | None = None
    for feature in sorted(features, key=lambda f: f.id):
        if feature.updated_at is not None and (updated is None or feature.updated_at > updated):
            updated = feature.updated_at
        settings = feature.environments.get(environment)
        rules: list[dict[str, Any]] = []
        if settings is not None and settings.enabled:
            rules = [
                r
                for r in (rule_payload(feature, rule, by_id, now) for rule in settings.rules)
                if r is not None
            ]
            created = feature.created_at
            rules[:0] = [
                _holdout_rule(feature, h)
                for h in holdouts
                if rules and created is not None and h.start is not None and created >= h.start
            ]
        entry: dict[str, Any] = {"defaultValue": feature.default_value}
        if rules:
            entry["rules"] = rules
        payload[feature.id] = entry
    return {
        "status": 200,
        "features": payload,
        "experiments": [],
        "dateUpdated": _iso(updated) if updated is not None else None,
    }


# --- versions -----------------------------------------------------------------------------


def _rule_changes(env: str, old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    changes: list[str] = []
    before = {r["id"]: r for r in old}
    after = {r["id"]: r for r in new}
    for rule_id in after.keys() - before.keys():
        changes.append(f"{env}: rule {rule_id!r} added ({after[rule_id]['type']})")
    for rule_id in before.keys() - after.keys():
        changes.append(f"{env}: rule {rule_id!r} removed")
    for rule_id in before.keys() & after.keys():
        a, b = before[rule_id], after[rule_id]
        for field in sorted(set(a) | set(b)):
            if a.get(field) != b.get(field):
                changes.append(
                    f"{env}: rule {rule_id!r} {field} {_short(a.get(field))} → "
                    f"{_short(b.get(field))}"
                )
    kept_old = [r["id"] for r in old if r["id"] in after]
    kept_new = [r["id"] for r in new if r["id"] in before]
    if kept_old != kept_new:
        changes.append(f"{env}: rules reordered to {kept_new}")
    return sorted(changes)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def describe_changes(old: Feature | None, new: Feature | None) -> list[str]:
    """What changed from ``old`` to ``new``, one line a change (``None``: absent)."""
    if old is None:
        return ["created"] if new is not None else []
    if new is None:
        return ["deleted"]
    a, b = old.content(), new.content()
    changes: list[str] = []
    for field in ("description", "value_type", "default_value"):
        if a[field] != b[field]:
            changes.append(f"{field} {_short(a[field])} → {_short(b[field])}")
    envs_a, envs_b = a["environments"], b["environments"]
    for env in sorted(set(envs_a) | set(envs_b)):
        if env not in envs_a:
            changes.append(f"{env}: environment added")
            continue
        if env not in envs_b:
            changes.append(f"{env}: environment removed")
            continue
        if envs_a[env]["enabled"] != envs_b[env]["enabled"]:
            changes.append(f"{env}: switched {'on' if envs_b[env]['enabled'] else 'off'}")
        changes += _rule_changes(env, envs_a[env]["rules"], envs_b[env]["rules"])
    return changes


def stage_change(
    previous: Feature | None,
    new: Feature | None,
    *,
    project_id: str,
    feature_id: str,
    last_version: int,
    by: str,
    comment: str,
    now: datetime,
) -> tuple[Feature | None, FeatureRevision] | None:
    """``new`` as it is stored (its next version, time and author) and its revision; ``None``
    when nothing changes. ``new`` ``None`` deletes the feature: the revision records it.
    ``last_version`` is the highest version the feature ever had (its revisions included),
    so a feature deleted and created again continues its history."""
    if previous is not None and new is not None and previous.content() == new.content():
        return None
    if previous is None and new is None:
        return None
    version = last_version + 1
    stored: Feature | None = None
    if new is not None:
        created = previous.created_at if previous is not None else None
        stored = Feature.model_validate(
            new.model_dump()
            | {
                "version": version,
                "updated_at": now,
                "updated_by": by,
                "comment": comment,
                "created_at": created or new.created_at or now,
            }
        )
    revision = FeatureRevision(
        id=f"{feature_id}@{version}",
        project_id=project_id,
        feature=feature_id,
        version=version,
        document=stored,
        changes=describe_changes(previous, stored),
        at=now,
        by=by,
        comment=comment,
    )
    return stored, revision

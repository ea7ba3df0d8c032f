"""Feature flags evaluated locally, from GrowthBook's SDK payload.

Sextant serves its features in the payload format of GrowthBook's SDKs
(``GET /api/features/{clientKey}``: ``{"features": {key: {"defaultValue", "rules"}}, …}``), so
GrowthBook's own SDKs read it unchanged, and Sextant's SDKs evaluate the very same document
with this module: a unit's value needs its attributes and the payload, never a network call.

:func:`evaluate` follows GrowthBook's JavaScript SDK (its ``evalFeature`` and
``runExperiment``), the reference the other GrowthBook SDKs are checked against, and passes the
``feature`` section of its conformance suite: rules in order; prerequisites
(``parentConditions``); ``filters`` and namespaces; force rules with ``condition``,
``coverage`` or ``range`` (percentage rollouts); experiment rules with ``variations``,
``weights``, ``coverage``, ``ranges``, ``hashAttribute``, ``seed``, ``hashVersion`` and
``meta`` (``passthrough`` variations, as holdouts use). Hashing is
:mod:`sextant.schemas.assignment`, the one implementation every Sextant SDK and the server use.
Not supported: sticky bucketing, URL targeting and contextual bandits (a rule with
``contextualBanditRef`` and no ``variations`` is skipped, as older GrowthBook SDKs do).

This module is part of the SDK's wheel (``sdk/python/hatch_build.py``): standard library only.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from sextant.schemas.assignment import (
    BucketRange,
    choose_variation,
    get_bucket_ranges,
    hash_value,
)
from tests.oracle.conditions import eval_condition, js_number

__all__ = [
    "ExperimentResult",
    "FeatureResult",
    "decrypt",
    "evaluate",
    "hash_attribute",
    "run_experiment",
]

Features = Mapping[str, Mapping[str, Any]]
Attributes = Mapping[str, Any]


class ExperimentResult:
    """Where an experiment rule put a unit: ``in_experiment`` and ``variation_id`` (the
    index), ``key`` (the variation's ``meta.key``, else its index as text), the value, and the
    hash that decided it (``hash_used`` is False for forced or excluded units)."""

    __slots__ = (
        "bucket",
        "experiment_key",
        "hash_attribute",
        "hash_used",
        "hash_value",
        "in_experiment",
        "key",
        "passthrough",
        "value",
        "variation_id",
    )

    def __init__(
        self,
        experiment: Mapping[str, Any],
        key: str,
        index: int,
        hash_used: bool,
        attribute: str,
        value: Any,
        bucket: float | None,
    ) -> None:
        variations = experiment["variations"]
        self.in_experiment = 0 <= index < len(variations)
        if not self.in_experiment:
            index = 0
        metas = experiment.get("meta")
        meta = metas[index] if metas and index < len(metas) else {}
        self.experiment_key = key
        self.variation_id = index
        self.key = str(meta.get("key") or index)
        self.value = variations[index] if variations else None
        self.hash_used = hash_used
        self.hash_attribute = attribute
        self.hash_value = value
        self.bucket = bucket
        self.passthrough = bool(meta.get("passthrough"))


class FeatureResult:
    """A feature's value for one unit, and why: ``source`` is ``defaultValue``, ``force``,
    ``experiment``, ``unknownFeature``, ``prerequisite`` or ``cyclicPrerequisite``;
    ``experiment`` is set when an experiment rule assigned the value (log an exposure)."""

    __slots__ = ("experiment", "exposures", "rule_id", "source", "value")

    def __init__(
        self,
        value: Any,
        source: str,
        rule_id: str = "",
        experiment: ExperimentResult | None = None,
        exposures: tuple[ExperimentResult, ...] = (),
    ) -> None:
        self.value = value
        self.source = source
        self.rule_id = rule_id
        self.experiment = experiment
        self.exposures = exposures
        """Every experiment that bucketed the unit on the way (a holdout's passthrough
        group included): what SDKs log as exposures, once per unit."""

    @property
    def on(self) -> bool:
        """JavaScript's truthiness of the value: ``0``, ``""``, ``false`` and ``null`` are off."""
        return _truthy(self.value)

    @property
    def off(self) -> bool:
        return not self.on

    def __repr__(self) -> str:
        return f"FeatureResult({self.value!r}, {self.source!r}, rule_id={self.rule_id!r})"


def _truthy(value: Any) -> bool:
    if value is None or value is False or value == "":
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0 and not math.isnan(value)
    return True


def _js_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if isinstance(value, int | float):
        return js_number(value)
    return str(value)


def hash_attribute(attributes: Attributes, name: str | None) -> tuple[str, str]:
    """``(attribute, value as text)`` the unit is hashed by; the value is ``""`` when the
    attribute is missing or falsy (the unit then stays out of rollouts and experiments)."""
    attribute = name or "id"
    value = attributes.get(attribute)
    return attribute, _js_string(value) if _truthy(value) else ""


def _raw_attribute(attributes: Attributes, name: str | None) -> Any:
    value = attributes.get(name or "id")
    return value if _truthy(value) else ""


def _in_range(n: float, bounds: Sequence[float]) -> bool:
    return bounds[0] <= n < bounds[1]


def _filtered_out(filters: Sequence[Mapping[str, Any]], attributes: Attributes) -> bool:
    for spec in filters:
        _, value = hash_attribute(attributes, spec.get("attribute"))
        if not value:
            return True
        n = hash_value(spec.get("seed", ""), value, spec.get("hashVersion") or 2)
        if n is None or not any(_in_range(n, r) for r in spec["ranges"]):
            return True
    return False


def _in_rollout(rule: Mapping[str, Any], seed: str, attributes: Attributes) -> bool:
    bounds = rule.get("range")
    coverage: Any = rule.get("coverage")
    if not bounds and coverage is None:
        return True
    if not bounds and coverage == 0:
        return False
    _, value = hash_attribute(attributes, rule.get("hashAttribute"))
    if not value:
        return False
    n = hash_value(seed, value, rule.get("hashVersion") or 1)
    if n is None:
        return False
    return _in_range(n, bounds) if bounds else bool(n <= coverage)


class _Context:
    __slots__ = ("attributes", "exposures", "features", "forced", "groups", "stack")

    def __init__(
        self,
        features: Features,
        attributes: Attributes,
        groups: Mapping[str, Any] | None,
        forced: Mapping[str, int] | None,
    ) -> None:
        self.features = features
        self.attributes = attributes
        self.groups = groups or {}
        self.forced = forced or {}
        self.stack: set[str] = set()
        self.exposures: list[ExperimentResult] = []


def evaluate(
    features: Features,
    key: str,
    attributes: Attributes,
    *,
    saved_groups: Mapping[str, Any] | None = None,
    forced_variations: Mapping[str, int] | None = None,
) -> FeatureResult:
    """The value of feature ``key`` for a unit with ``attributes`` (its id under ``id``, or
    under the rules' ``hashAttribute``), from a payload's ``features``."""
    ctx = _Context(features, attributes, saved_groups, forced_variations)
    result = _feature(ctx, key)
    if ctx.exposures:
        result.exposures = tuple(ctx.exposures)
    return result


def _parents_pass(conditions: Sequence[Mapping[str, Any]], ctx: _Context) -> str:
    """``pass``, ``fail``, ``gate`` (a blocking prerequisite failed) or ``cyclic``."""
    evaluated = set(ctx.stack)
    for parent in conditions:
        ctx.stack = set(evaluated)
        result = _feature(ctx, parent["id"])
        if result.source == "cyclicPrerequisite":
            return "cyclic"
        if not eval_condition({"value": result.value}, parent.get("condition") or {}, ctx.groups):
            return "gate" if parent.get("gate") else "fail"
    return "pass"


def _feature(ctx: _Context, key: str) -> FeatureResult:
    if key in ctx.stack:
        return FeatureResult(None, "cyclicPrerequisite")
    ctx.stack.add(key)
    feature = ctx.features.get(key)
    if feature is None:
        return FeatureResult(None, "unknownFeature")
    rules = feature.get("rules") or ()
    evaluated = set(ctx.stack)
    for rule in rules:
        parents = rule.get("parentConditions")
        if parents:
            verdict = _parents_pass(parents, ctx)
            if verdict == "cyclic":
                return FeatureResult(None, "cyclicPrerequisite")
            if verdict == "gate":
                return FeatureResult(None, "prerequisite")
            if verdict == "fail":
                continue
            ctx.stack = set(evaluated)
        filters = rule.get("filters")
        if filters and _filtered_out(filters, ctx.attributes):
            continue
        if "force" in rule:
            condition = rule.get("condition")
            if condition and not eval_condition(ctx.attributes, condition, ctx.groups):
                continue
            if not _in_rollout(rule, rule.get("seed") or key, ctx.attributes):
                continue
            return FeatureResult(rule["force"], "force", rule.get("id") or "")
        variations = rule.get("variations")
        if variations is None:
            continue
        result = _run(rule, ctx, rule.get("key") or key)
        if result.hash_used and result.in_experiment:
            ctx.exposures.append(result)
        if result.in_experiment and not result.passthrough:
            return FeatureResult(result.value, "experiment", rule.get("id") or "", result)
    value = feature.get("defaultValue")
    return FeatureResult(value, "defaultValue")


def run_experiment(
    experiment: Mapping[str, Any],
    attributes: Attributes,
    *,
    features: Features | None = None,
    saved_groups: Mapping[str, Any] | None = None,
    forced_variations: Mapping[str, int] | None = None,
) -> ExperimentResult:
    """Run one experiment in GrowthBook's format (``key``, ``variations``, …) for a unit."""
    ctx = _Context(features or {}, attributes, saved_groups, forced_variations)
    return _run(experiment, ctx, experiment["key"])


@lru_cache(maxsize=1024)
def _ranges(count: int, coverage: float, weights: tuple[float, ...] | None) -> list[BucketRange]:
    return get_bucket_ranges(count, coverage, weights)


def _run(experiment: Mapping[str, Any], ctx: _Context, key: str) -> ExperimentResult:
    attribute, value = hash_attribute(ctx.attributes, experiment.get("hashAttribute"))

    raw = _raw_attribute(ctx.attributes, experiment.get("hashAttribute"))

    def out() -> ExperimentResult:
        return ExperimentResult(experiment, key, -1, False, attribute, raw, None)

    variations = experiment["variations"]
    if len(variations) < 2:
        return out()
    if key in ctx.forced:
        return ExperimentResult(experiment, key, ctx.forced[key], False, attribute, raw, None)
    if experiment.get("status") == "draft" or experiment.get("active") is False:
        return out()
    if not value:
        return out()
    filters = experiment.get("filters")
    namespace = experiment.get("namespace")
    if filters:
        if _filtered_out(filters, ctx.attributes):
            return out()
    elif namespace:
        n = hash_value("__" + namespace[0], value, 1)
        if n is None or not namespace[1] <= n < namespace[2]:
            return out()
    condition = experiment.get("condition")
    if condition and not eval_condition(ctx.attributes, condition, ctx.groups):
        return out()
    parents = experiment.get("parentConditions")
    if parents and _parents_pass(parents, ctx) != "pass":
        return out()
    n = hash_value(experiment.get("seed") or key, value, experiment.get("hashVersion") or 1)
    if n is None:
        return out()
    ranges = experiment.get("ranges")
    if not ranges:
        coverage = experiment.get("coverage")
        weights = experiment.get("weights")
        ranges = _ranges(
            len(variations),
            1.0 if coverage is None else coverage,
            None if weights is None else tuple(weights),
        )
    assigned = choose_variation(n, ranges)
    if assigned < 0:
        return out()
    if "force" in experiment:
        forced = experiment["force"]
        index = -1 if forced is None else forced
        return ExperimentResult(experiment, key, index, False, attribute, raw, None)
    if experiment.get("status") == "stopped":
        return out()
    return ExperimentResult(experiment, key, assigned, True, attribute, raw, n)


def decrypt(encrypted: str, key: str) -> str:
    """GrowthBook's encrypted payload fields (``encryptedFeatures``): ``iv.ciphertext`` in
    base64, AES-128-CBC with PKCS#7 padding under the base64 ``key``. Needs the
    ``cryptography`` package (``pip install 'sextant-sdk[encryption]'``); raises
    ``ValueError`` when the key does not open it."""
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    try:
        iv, _, body = encrypted.partition(".")
        cipher = Cipher(algorithms.AES(base64.b64decode(key)), modes.CBC(base64.b64decode(iv)))
        decryptor = cipher.decryptor()
        padded = decryptor.update(base64.b64decode(body)) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        return (unpadder.update(padded) + unpadder.finalize()).decode()
    except (ValueError, TypeError) as error:
        raise ValueError("the payload does not open with this decryption key") from error

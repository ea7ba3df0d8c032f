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

A payload is evaluated through a :class:`FeatureSet`, which compiles each feature on its first
evaluation: every rule becomes a function of the attributes, with its conditions compiled, its
bucket ranges, seeds and results prepared, so that evaluating a flag again only reads the
attributes it tests and hashes the unit. Keep one ``FeatureSet`` for as long as the payload
(the SDK keeps one per payload it fetched); :func:`evaluate` compiles the feature it is asked
for on every call.

This module is part of the SDK's wheel (``sdk/python/hatch_build.py``): standard library only.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

from sextant.schemas.assignment import (
    BucketRange,
    choose_variation,
    get_bucket_ranges,
    hash_value,
)
from sextant.schemas.conditions import (
    CONDITION_ERRORS,
    Test,
    compile_condition,
    condition_test,
    js_number,
)

__all__ = [
    "ExperimentResult",
    "FeatureResult",
    "FeatureSet",
    "Outcome",
    "decrypt",
    "evaluate",
    "hash_attribute",
    "run_experiment",
    "truthy",
]

Features = Mapping[str, Mapping[str, Any]]
Attributes = Mapping[str, Any]
SavedGroups = Mapping[str, Any]
Forced = Mapping[str, int]


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


def _assigned(
    key: str, index: int, variation: tuple[str, Any, bool], attribute: str, raw: Any, n: float
) -> ExperimentResult:
    """A unit hashed into variation ``index``, whose (key, value, passthrough) are known."""
    result = ExperimentResult.__new__(ExperimentResult)
    result.experiment_key = key
    result.variation_id = index
    result.key, result.value, result.passthrough = variation
    result.in_experiment = True
    result.hash_used = True
    result.hash_attribute = attribute
    result.hash_value = raw
    result.bucket = n
    return result


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
        return truthy(self.value)

    @property
    def off(self) -> bool:
        return not self.on

    def __repr__(self) -> str:
        return f"FeatureResult({self.value!r}, {self.source!r}, rule_id={self.rule_id!r})"


Outcome = tuple[Any, str, str, ExperimentResult | None, tuple[ExperimentResult, ...]]
"""A feature's evaluation as a tuple: the fields of its :class:`FeatureResult` (value, source,
rule id, experiment, exposures), which a caller reading only the value need not build."""


def truthy(value: Any) -> bool:
    """JavaScript's truthiness: ``0``, ``NaN``, ``""``, ``false`` and ``null`` are falsy."""
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
    return attribute, _js_string(value) if truthy(value) else ""


def _hash_text(value: Any) -> str:
    """The text a unit's attribute value hashes as (``""``: the unit is not hashed)."""
    if type(value) is str:
        return value
    return _js_string(value) if truthy(value) else ""


def _raw_attribute(attributes: Attributes, name: str | None) -> Any:
    value = attributes.get(name or "id")
    return value if truthy(value) else ""


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


_NOTHING: Mapping[str, Any] = {}
_UNKNOWN: Outcome = (None, "unknownFeature", "", None, ())
_CYCLIC: Outcome = (None, "cyclicPrerequisite", "", None, ())


class _Trail:
    """The features being evaluated for one call with prerequisites (GrowthBook's stack of
    evaluated features, which detects cycles)."""

    __slots__ = ("flags", "stack")

    def __init__(self, flags: FeatureSet, stack: set[str]) -> None:
        self.flags = flags
        self.stack = stack


Step = Callable[
    [Attributes, SavedGroups, Forced, "_Trail | None"], "Outcome | list[ExperimentResult] | None"
]
"""A compiled rule: its outcome when it assigns the value; otherwise ``None``, or the
exposures it logged while passing the unit through (a holdout's passthrough group)."""

Plan = Callable[[Attributes, SavedGroups, Forced, "_Trail | None"], Outcome]
"""A compiled feature."""

Assign = Callable[
    [Attributes, SavedGroups, Forced, "_Trail | None", "list[ExperimentResult] | None"],
    "ExperimentResult | None",
]
"""A compiled experiment: where it puts a unit, ``None`` when the unit is not in it (a forced
variation out of range gives a result that is not in the experiment either). Prerequisites
are evaluated on the trail, and the exposures they log added to the list."""


class FeatureSet:
    """The features of one payload, compiled for evaluation: each feature on its first
    evaluation, once. The payload must not change afterwards (a new payload is a new set)."""

    __slots__ = ("_plans", "features")

    def __init__(self, features: Features) -> None:
        self.features = features
        self._plans: dict[str, Plan] = {}

    def evaluate(
        self,
        key: str,
        attributes: Attributes,
        *,
        saved_groups: SavedGroups | None = None,
        forced_variations: Forced | None = None,
    ) -> FeatureResult:
        """The value of feature ``key`` for a unit with ``attributes`` (see :func:`evaluate`)."""
        return FeatureResult(*self.outcome(key, attributes, saved_groups, forced_variations))

    def outcome(
        self,
        key: str,
        attributes: Attributes,
        saved_groups: SavedGroups | None = None,
        forced_variations: Forced | None = None,
    ) -> Outcome:
        """:meth:`evaluate`'s result as a tuple (its fields, in order)."""
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plan(key)
        return plan(attributes, saved_groups or _NOTHING, forced_variations or _NOTHING, None)

    def _plan(self, key: str) -> Plan:
        feature = self.features.get(key)
        if feature is None:
            return _unknown
        plan = self._plans[key] = _compile_feature(self, feature, key)
        return plan

    def _prerequisite(
        self, key: str, attributes: Attributes, groups: SavedGroups, forced: Forced, trail: _Trail
    ) -> Outcome:
        if key in trail.stack:
            return _CYCLIC
        trail.stack.add(key)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plan(key)
        return plan(attributes, groups, forced, trail)


def _unknown(_a: Attributes, _g: SavedGroups, _f: Forced, _t: _Trail | None) -> Outcome:
    return _UNKNOWN


def evaluate(
    features: Features,
    key: str,
    attributes: Attributes,
    *,
    saved_groups: SavedGroups | None = None,
    forced_variations: Forced | None = None,
) -> FeatureResult:
    """The value of feature ``key`` for a unit with ``attributes`` (its id under ``id``, or
    under the rules' ``hashAttribute``), from a payload's ``features``."""
    return FeatureSet(features).evaluate(
        key, attributes, saved_groups=saved_groups, forced_variations=forced_variations
    )


def run_experiment(
    experiment: Mapping[str, Any],
    attributes: Attributes,
    *,
    features: Features | None = None,
    saved_groups: Mapping[str, Any] | None = None,
    forced_variations: Mapping[str, int] | None = None,
) -> ExperimentResult:
    """Run one experiment in GrowthBook's format (``key``, ``variations``, …) for a unit."""
    trail = _Trail(FeatureSet(features or {}), set())
    key = experiment["key"]
    assign = _compile_experiment(experiment, key, filters_checked=False)
    groups, forced = saved_groups or _NOTHING, forced_variations or _NOTHING
    result = assign(attributes, groups, forced, trail, [])
    if result is None:
        attribute, _ = hash_attribute(attributes, experiment.get("hashAttribute"))
        raw = _raw_attribute(attributes, experiment.get("hashAttribute"))
        return ExperimentResult(experiment, key, -1, False, attribute, raw, None)
    return result


# --- features ------------------------------------------------------------------------------


def _compile_feature(flags: FeatureSet, feature: Mapping[str, Any], key: str) -> Plan:
    default: Outcome = (feature.get("defaultValue"), "defaultValue", "", None, ())
    rules = feature.get("rules") or ()
    if any(_has_parents(rule) for rule in rules):
        rules_ = [_rule_with_parents(rule, key) for rule in rules]
        return _with_prerequisites(flags, key, rules_, default)
    steps = [step for step in (_rule(rule, key) for rule in rules) if step is not None]
    return _in_order(steps, default)


def _has_parents(rule: Any) -> bool:
    try:
        return bool(rule.get("parentConditions"))
    except AttributeError:
        return False


def _in_order(steps: list[Step], default: Outcome) -> Plan:
    """The first rule that assigns the value, else the default."""
    if len(steps) == 1:
        (step,) = steps

        def one(attrs: Attributes, groups: SavedGroups, forced: Forced, trail: Any) -> Outcome:
            out = step(attrs, groups, forced, trail)
            if out is None:
                return default
            if isinstance(out, list):
                return _joined(out, default)
            return out

        return one

    def first(attrs: Attributes, groups: SavedGroups, forced: Forced, trail: Any) -> Outcome:
        seen: list[ExperimentResult] | None = None
        for step in steps:
            out = step(attrs, groups, forced, trail)
            if out is None:
                continue
            if isinstance(out, list):
                seen = out if seen is None else seen + out
                continue
            return out if seen is None else _joined(seen, out)
        return default if seen is None else _joined(seen, default)

    return first


def _joined(exposures: list[ExperimentResult], out: Outcome) -> Outcome:
    """``out`` with ``exposures`` logged before it."""
    return (out[0], out[1], out[2], out[3], (*exposures, *out[4]))


class _Parent(NamedTuple):
    """A prerequisite: the feature, the condition its value must meet, whether it gates."""

    key: str
    holds: Callable[[Any, SavedGroups | None], bool]
    gate: bool


Parents = list[Any]
"""Prerequisites in order: each a :class:`_Parent`, or as written where it cannot be read
(evaluating it then fails, as it did)."""


def _with_prerequisites(
    flags: FeatureSet, key: str, rules: list[tuple[Parents | None, Step | None]], default: Outcome
) -> Plan:
    """GrowthBook's rule loop with prerequisites: a failed prerequisite skips its rule, a
    failed gate (or a cycle) ends the evaluation."""

    def evaluated(attrs: Attributes, groups: SavedGroups, forced: Forced, trail: Any) -> Outcome:
        if trail is None:
            trail = _Trail(flags, {key})
        exposures: list[ExperimentResult] = []
        before = set(trail.stack)
        for parents, step in rules:
            if parents is not None:
                verdict = _parents_pass(parents, attrs, groups, forced, trail, exposures)
                if verdict == "cyclic":
                    return _joined(exposures, _CYCLIC)
                if verdict == "gate":
                    return _joined(exposures, (None, "prerequisite", "", None, ()))
                if verdict == "fail":
                    continue
                trail.stack = set(before)
            out = None if step is None else step(attrs, groups, forced, trail)
            if out is None:
                continue
            if isinstance(out, list):
                exposures += out
                continue
            return _joined(exposures, out)
        return _joined(exposures, default)

    return evaluated


def _parents_pass(
    parents: Parents,
    attrs: Attributes,
    groups: SavedGroups,
    forced: Forced,
    trail: _Trail,
    exposures: list[ExperimentResult],
) -> str:
    """``pass``, ``fail``, ``gate`` (a blocking prerequisite failed) or ``cyclic``."""
    before = set(trail.stack)
    for parent in parents:
        trail.stack = set(before)
        key, holds, gate = parent if type(parent) is _Parent else _parent(parent)
        out = trail.flags._prerequisite(key, attrs, groups, forced, trail)
        exposures += out[4]
        if out[1] == "cyclicPrerequisite":
            return "cyclic"
        if not holds({"value": out[0]}, groups):
            return "gate" if gate else "fail"
    return "pass"


def _parent(parent: Mapping[str, Any]) -> _Parent:
    key = parent["id"]
    return _Parent(key, compile_condition(parent.get("condition") or {}), bool(parent.get("gate")))


def _compile_parents(conditions: Any) -> Parents:
    try:
        parents = list(conditions)
    except TypeError:
        return [conditions]
    return [_readable(parent) for parent in parents]


def _readable(parent: Any) -> Any:
    try:
        return _parent(parent)
    except Exception:  # noqa: BLE001 - read again, and failing, where it is evaluated
        return parent


# --- rules ---------------------------------------------------------------------------------


def _rule(rule: Mapping[str, Any], key: str) -> Step | None:
    """A rule as a step (``None``: it never assigns anything nor logs anything). A rule that
    cannot be compiled fails when it is reached, as evaluating it did."""
    try:
        return _compile_rule(rule, key)
    except Exception:  # noqa: BLE001 - raised again where the rule is evaluated

        def failing(*_: Any) -> None:
            _compile_rule(rule, key)

        return failing


def _rule_with_parents(rule: Mapping[str, Any], key: str) -> tuple[Parents | None, Step | None]:
    try:
        conditions = rule.get("parentConditions")
    except Exception:  # noqa: BLE001 - the rule's step raises it again where it is reached
        return None, _rule(rule, key)
    return (_compile_parents(conditions) if conditions else None), _rule(rule, key)


def _compile_rule(rule: Mapping[str, Any], key: str) -> Step | None:
    filters = rule.get("filters")
    if "force" in rule:
        return _force_rule(rule, key, filters)
    variations = rule.get("variations")
    if variations is None:
        return _filters_only(filters) if filters else None
    return _experiment_rule(rule, key, filters)


def _filters_only(filters: Any) -> Step:
    def step(attrs: Attributes, _g: SavedGroups, _f: Forced, _t: Any) -> None:
        _filtered_out(filters, attrs)

    return step


def _force_rule(rule: Mapping[str, Any], key: str, filters: Any) -> Step:
    hit: Outcome = (rule["force"], "force", rule.get("id") or "", None, ())
    condition = rule.get("condition")
    test = condition_test(condition) if condition else None
    in_rollout = _rollout(rule, rule.get("seed") or key)
    if not filters and in_rollout is None and test is not None:
        return _condition_step(test, hit)
    if not filters and test is None and in_rollout is not None:
        rollout = in_rollout
        return lambda attrs, _g, _f, _t: hit if rollout(attrs) else None

    def step(attrs: Attributes, groups: SavedGroups, _f: Forced, _t: Any) -> Outcome | None:
        if filters and _filtered_out(filters, attrs):
            return None
        if test is not None:
            try:
                if not test(attrs, groups):
                    return None
            except CONDITION_ERRORS:
                return None
        if in_rollout is not None and not in_rollout(attrs):
            return None
        return hit

    return step


def _condition_step(test: Test, hit: Outcome) -> Step:
    def step(attrs: Attributes, groups: SavedGroups, _f: Forced, _t: Any) -> Outcome | None:
        try:
            return hit if test(attrs, groups) else None
        except CONDITION_ERRORS:
            return None

    return step


def _rollout(rule: Mapping[str, Any], seed: str) -> Callable[[Attributes], bool] | None:
    """Whether a unit is in the rule's share of units (``None``: every unit is)."""
    bounds = rule.get("range")
    coverage: Any = rule.get("coverage")
    if not bounds and coverage is None:
        return None
    if not bounds and coverage == 0:
        return lambda _: False
    attribute = rule.get("hashAttribute") or "id"
    version = rule.get("hashVersion") or 1
    if not bounds:

        def covered(attrs: Attributes) -> bool:
            value = _hash_text(attrs.get(attribute))
            if not value:
                return False
            n = hash_value(seed, value, version)
            return n is not None and bool(n <= coverage)

        return covered
    try:
        low, high = bounds[0], bounds[1]
    except Exception:  # noqa: BLE001 - raised again when a unit is hashed, as before

        def in_bounds(attrs: Attributes) -> bool:
            value = _hash_text(attrs.get(attribute))
            if not value:
                return False
            n = hash_value(seed, value, version)
            return n is not None and _in_range(n, bounds)

        return in_bounds

    def in_range(attrs: Attributes) -> bool:
        value = attrs.get(attribute)
        if type(value) is not str:
            value = _hash_text(value)
        if not value:
            return False
        n = hash_value(seed, value, version)
        return n is not None and low <= n < high

    return in_range


# --- experiments ---------------------------------------------------------------------------


def _experiment_rule(rule: Mapping[str, Any], key: str, filters: Any) -> Step:
    assign = _compile_experiment(rule, rule.get("key") or key, filters_checked=True)
    rule_id = rule.get("id") or ""
    has_parents = bool(rule.get("parentConditions"))

    def step(
        attrs: Attributes, groups: SavedGroups, forced: Forced, trail: Any
    ) -> Outcome | list[ExperimentResult] | None:
        if filters and _filtered_out(filters, attrs):
            return None
        gathered: list[ExperimentResult] | None = [] if has_parents else None
        result = assign(attrs, groups, forced, trail, gathered)
        if result is not None and result.in_experiment:
            exposures: tuple[ExperimentResult, ...] = (result,) if result.hash_used else ()
            if not result.passthrough:
                if gathered:
                    exposures = (*gathered, *exposures)
                return (result.value, "experiment", rule_id, result, exposures)
            if exposures:
                return [*(gathered or ()), *exposures]
        return gathered or None

    return step


def _compile_experiment(
    experiment: Mapping[str, Any], key: str, *, filters_checked: bool
) -> Assign:
    """GrowthBook's ``runExperiment`` for one experiment, prepared: the checks in its order,
    with the namespace's and variations' bounds and each variation's result computed once.
    A rule's own filters were checked before (``filters_checked``)."""
    name = experiment.get("hashAttribute")
    variations = experiment["variations"]
    assign = _not_in if len(variations) < 2 else _assign(experiment, key, filters_checked)
    try:
        ExperimentResult(experiment, key, -1, False, name or "id", "", None)
    except Exception:  # noqa: BLE001 - describing a unit out of it fails, as it did
        return _describing_the_excluded(assign, experiment, key)
    return assign


def _describing_the_excluded(assign: Assign, experiment: Mapping[str, Any], key: str) -> Assign:
    def described(
        attrs: Attributes,
        groups: SavedGroups,
        forced: Forced,
        trail: Any,
        exposures: list[ExperimentResult] | None,
    ) -> ExperimentResult | None:
        result = assign(attrs, groups, forced, trail, exposures)
        if result is None:
            name = experiment.get("hashAttribute")
            raw = _raw_attribute(attrs, name)
            return ExperimentResult(experiment, key, -1, False, name or "id", raw, None)
        return result

    return described


def _assign(experiment: Mapping[str, Any], key: str, filters_checked: bool) -> Assign:
    name = experiment.get("hashAttribute")
    attribute = name or "id"
    variations = experiment["variations"]
    inactive = experiment.get("status") == "draft" or experiment.get("active") is False
    filters = experiment.get("filters")
    in_namespace = None if filters else _namespace(experiment.get("namespace"))
    if filters_checked:
        filters = None
    condition = experiment.get("condition")
    test = condition_test(condition) if condition else None
    parents = experiment.get("parentConditions")
    seed = experiment.get("seed") or key
    version = experiment.get("hashVersion") or 1
    choose = _chooser(experiment, len(variations))
    variation = _variations(experiment, key, attribute)
    forcing = "force" in experiment
    stopped = experiment.get("status") == "stopped"

    def assign(
        attrs: Attributes,
        groups: SavedGroups,
        forced: Forced,
        trail: Any,
        exposures: list[ExperimentResult] | None,
    ) -> ExperimentResult | None:
        if forced and key in forced:
            raw = _raw_attribute(attrs, name)
            return ExperimentResult(experiment, key, forced[key], False, attribute, raw, None)
        if inactive:
            return None
        value = attrs.get(attribute)
        text = value if type(value) is str else _hash_text(value)
        if not text:
            return None
        if filters:
            if _filtered_out(filters, attrs):
                return None
        elif in_namespace is not None and not in_namespace(text):
            return None
        if test is not None:
            try:
                if not test(attrs, groups):
                    return None
            except CONDITION_ERRORS:
                return None
        if parents and not _prerequisites_pass(parents, attrs, groups, forced, trail, exposures):
            return None
        n = hash_value(seed, text, version)
        if n is None:
            return None
        index = choose(n)
        if index < 0:
            return None
        if forcing:
            index = experiment["force"]
            index = -1 if index is None else index
            raw = _raw_attribute(attrs, name)
            return ExperimentResult(experiment, key, index, False, attribute, raw, None)
        if stopped:
            return None
        # The hash text is not empty, so the attribute is truthy: its raw value is reported.
        return variation(index, value, n)

    return assign


def _prerequisites_pass(
    parents: Any,
    attrs: Attributes,
    groups: SavedGroups,
    forced: Forced,
    trail: _Trail,
    exposures: list[ExperimentResult] | None,
) -> bool:
    gathered = [] if exposures is None else exposures
    return (
        _parents_pass(_compile_parents(parents), attrs, groups, forced, trail, gathered) == "pass"
    )


def _not_in(*_: Any) -> None:
    return None


def _namespace(namespace: Any) -> Callable[[str], bool] | None:
    """Whether a unit's hash text falls in GrowthBook's ``namespace`` ``[id, start, end]``."""
    if not namespace:
        return None
    try:
        seed, low, high = "__" + namespace[0], namespace[1], namespace[2]
    except Exception:  # noqa: BLE001 - raised again when a unit is hashed, as before

        def late(value: str) -> bool:
            n = hash_value("__" + namespace[0], value, 1)
            return n is not None and namespace[1] <= n < namespace[2]

        return late

    def inside(value: str) -> bool:
        n = hash_value(seed, value, 1)
        return n is not None and low <= n < high

    return inside


@lru_cache(maxsize=1024)
def _ranges(count: int, coverage: float, weights: tuple[float, ...] | None) -> list[BucketRange]:
    return get_bucket_ranges(count, coverage, weights)


def _experiment_ranges(experiment: Mapping[str, Any], count: int) -> Sequence[BucketRange]:
    ranges = experiment.get("ranges")
    if ranges:
        return ranges  # type: ignore[no-any-return]
    coverage = experiment.get("coverage")
    weights = experiment.get("weights")
    return _ranges(
        count,
        1.0 if coverage is None else coverage,
        None if weights is None else tuple(weights),
    )


def _chooser(experiment: Mapping[str, Any], count: int) -> Callable[[float], int]:
    """The variation a hash selects (``-1``: none, the unit is not covered)."""
    try:
        bounds = [
            (i, start, end) for i, (start, end) in enumerate(_experiment_ranges(experiment, count))
        ]
    except Exception:  # noqa: BLE001 - raised again when a unit is hashed, as before
        return lambda n: choose_variation(n, _experiment_ranges(experiment, count))

    def choose(n: float) -> int:
        for i, start, end in bounds:
            if start <= n < end:
                return i
        return -1

    return choose


def _variation(variations: Any, metas: Any, index: int) -> tuple[str, Any, bool] | None:
    """(key, value, passthrough) of a variation; ``None`` where its meta cannot be read."""
    try:
        meta = metas[index] if metas and index < len(metas) else {}
        return str(meta.get("key") or index), variations[index], bool(meta.get("passthrough"))
    except Exception:  # noqa: BLE001 - raised again for a unit in that variation
        return None


def _variations(
    experiment: Mapping[str, Any], key: str, attribute: str
) -> Callable[[int, Any, float], ExperimentResult]:
    """The result of a unit hashed into variation ``index``, from what is known of it before."""
    variations = experiment["variations"]
    metas = experiment.get("meta")
    prepared = {}
    for index in range(len(variations)):
        known = _variation(variations, metas, index)
        if known is not None:
            prepared[index] = known

    def result(index: int, raw: Any, n: float) -> ExperimentResult:
        known = prepared.get(index)
        if known is None:
            return ExperimentResult(experiment, key, index, True, attribute, raw, n)
        return _assigned(key, index, known, attribute, raw, n)

    return result


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

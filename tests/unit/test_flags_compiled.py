"""The compiled flag evaluator gives what the straightforward one gives (``tests/oracle``), on
random conditions, payloads and attributes: the same value, source, rule, experiment result
and exposures, and the same error where the payload is malformed."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sextant.schemas import flags as flags_module
from sextant.schemas.conditions import compile_condition, eval_condition
from sextant.schemas.flags import FeatureSet, evaluate
from tests.oracle import conditions as oracle_conditions
from tests.oracle import flags as oracle_flags

NAMES = ["a", "b", "n", "tags", "obj.d", "tags.0", "tags.length", "id"]
STRINGS = ["", "a", "B", "fr", "FR", "1.2.3", "v2.0.0-beta", "1.10.0", "x@shop.com", "10", "😀"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-3, max_value=12)
    | st.sampled_from([0.5, 1.0, 2.5, float("nan"), float("inf"), 10**400])
    | st.sampled_from(STRINGS)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("dex"), inner),
    max_leaves=6,
)
attributes = st.dictionaries(st.sampled_from(["a", "b", "n", "tags", "obj", "id"]), json_values)

OPERATORS = [
    "$eq", "$ne", "$lt", "$lte", "$gt", "$gte", "$in", "$nin", "$ini", "$nini", "$all",
    "$alli", "$exists", "$type", "$regex", "$regexi", "$notRegex", "$veq", "$vne", "$vlt",
    "$vlte", "$vgt", "$vgte", "$inGroup", "$notInGroup", "$unknown",
]  # fmt: skip
PATTERNS = ["^a", "fr$", "@shop\\.com$", "(", "a/b", "", 3]
TYPES = ["string", "number", "boolean", "array", "object", "null", "unknown"]


def operator_args(specs: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    simple = st.tuples(st.sampled_from(OPERATORS), json_values | st.sampled_from(PATTERNS))
    typed = st.tuples(st.just("$type"), st.sampled_from(TYPES))
    groups = st.tuples(st.sampled_from(["$inGroup", "$notInGroup"]), st.sampled_from(GROUP_IDS))
    nested = st.tuples(st.sampled_from(["$not", "$size", "$elemMatch"]), specs) | st.tuples(
        st.sampled_from(["$all", "$alli"]), st.lists(specs, max_size=3)
    )
    pairs = st.lists(simple | typed | groups | nested, min_size=1, max_size=3)
    return pairs.map(dict)


GROUP_IDS = ["g1", "g2", "missing", 4]


def conditions() -> st.SearchStrategy[Any]:
    def extend(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        specs = json_values | operator_args(json_values | inner)
        fields = st.dictionaries(st.sampled_from(NAMES), specs, max_size=3)
        logic = st.tuples(
            st.sampled_from(["$or", "$nor", "$and"]), st.lists(inner, max_size=3) | json_values
        ) | st.tuples(st.just("$not"), inner | json_values)
        saved = st.tuples(
            st.just("$savedGroup"),
            st.fixed_dictionaries(
                {"id": st.sampled_from(GROUP_IDS)},
                optional={"attributeKey": st.sampled_from(["a", "tags", 1])},
            )
            | json_values,
        )
        entries = st.lists(logic | saved, max_size=2).map(dict)
        return st.tuples(fields, entries).map(lambda p: {**p[0], **p[1]}) | json_values

    base = st.dictionaries(st.sampled_from(NAMES), json_values, max_size=2)
    return st.recursive(base, extend, max_leaves=8)


saved_groups = st.dictionaries(
    st.sampled_from(["g1", "g2"]),
    st.lists(json_values, max_size=3)
    | st.fixed_dictionaries(
        {"type": st.just("list"), "values": st.lists(json_values, max_size=3)},
        optional={"attributeKey": st.sampled_from(["a", "tags"])},
    )
    | st.fixed_dictionaries({"type": st.just("condition"), "condition": conditions()}),
)


def outcome(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str, Any]:
    """What a call gives: its value, or the type of what it raised."""
    try:
        value = call(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - the type is the comparison
        return "raised", type(error)
    return "value", value


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(condition=conditions(), attrs=attributes, groups=saved_groups | st.none())
def test_conditions_agree(condition: Any, attrs: dict[str, Any], groups: Any) -> None:
    want = outcome(lambda: oracle_conditions.eval_condition(attrs, condition, groups))
    assert outcome(lambda: eval_condition(attrs, condition, groups)) == want
    compiled = compile_condition(condition)
    assert outcome(lambda: compiled(attrs, groups)) == want
    assert outcome(lambda: compiled(attrs, groups)) == want  # a compiled condition is reusable


@given(condition=conditions(), value=json_values)
def test_conditions_on_any_value_agree(condition: Any, value: Any) -> None:
    want = outcome(lambda: oracle_conditions.eval_condition(value, condition))
    assert outcome(lambda: eval_condition(value, condition)) == want


# --- features ------------------------------------------------------------------------------

KEYS = ["f1", "f2", "f3"]
UNITS = ["u1", "user-2", "😀-user", "7", "user-12-0.5"]
SHARES = [0.0, 0.1, 0.25, 0.5, 0.75, 1.0]


class Payloads:
    """Random payloads and units, each field present as often as GrowthBook's payloads have
    it; the conditions come from the strategy above."""

    def __init__(self, rng: random.Random, data: st.DataObject) -> None:
        self.rng = rng
        self.data = data

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, *values: Any) -> Any:
        return self.rng.choice(values)

    def bounds(self) -> list[float]:
        return sorted(self.rng.sample(SHARES, 2))

    def payload(self) -> dict[str, Any]:
        return {key: self.feature() for key in KEYS if self.chance(0.9)}

    def feature(self) -> dict[str, Any]:
        feature: dict[str, Any] = {"defaultValue": self.pick(False, "a", 0, None, {"x": 1})}
        if self.chance(0.9):
            feature["rules"] = [self.rule() for _ in range(self.rng.randint(0, 4))]
        return feature

    def rule(self) -> dict[str, Any]:
        kind = self.rng.random()
        rule = self.force() if kind < 0.4 else self.experiment() if kind < 0.9 else {}
        if self.chance(0.5):
            rule["id"] = self.pick("r1", "r2", "")
        if self.chance(0.1):
            rule["filters"] = [self.filter() for _ in range(self.rng.randint(1, 2))]
        if self.chance(0.12):
            rule["parentConditions"] = [self.parent() for _ in range(self.rng.randint(1, 2))]
        self.hashing(rule)
        return rule

    def hashing(self, rule: dict[str, Any]) -> None:
        if self.chance(0.2):
            rule["hashAttribute"] = self.pick("id", "company", "")
        if self.chance(0.6):
            rule["hashVersion"] = self.pick(1, 2, 2, 2, 3)
        if self.chance(0.4):
            rule["seed"] = self.pick("seed", "")

    def force(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"force": self.pick(True, "b", 1, None, [1])}
        if self.chance(0.5):
            rule["condition"] = self.condition()
        if self.chance(0.25):
            rule["coverage"] = self.pick(*SHARES)
        if self.chance(0.3):
            rule["range"] = self.bounds()
        return rule

    def experiment(self) -> dict[str, Any]:
        count = self.pick(0, 1, 2, 2, 2, 3, 4)
        rule: dict[str, Any] = {"variations": [self.pick("a", "b", 0, None) for _ in range(count)]}
        if self.chance(0.5):
            rule["key"] = self.pick("e1", "e2")
        if self.chance(0.4):
            weights = [self.rng.randint(0, 3) for _ in range(count)]
            total = sum(weights) or 1
            rule["weights"] = [w / total for w in weights] if self.chance(0.8) else weights
        if self.chance(0.4):
            rule["coverage"] = self.pick(*SHARES)
        if self.chance(0.15):
            rule["ranges"] = [self.bounds() for _ in range(count)]
        if self.chance(0.25):
            rule["namespace"] = [self.pick("ns", "n2"), *self.bounds()]
        if self.chance(0.5):
            rule["meta"] = [self.meta() for _ in range(self.rng.randint(0, count))]
        if self.chance(0.1):
            rule["status"] = self.pick("draft", "running", "stopped")
        if self.chance(0.05):
            rule["active"] = self.pick(True, False)
        if self.chance(0.3):
            rule["condition"] = self.condition()
        return rule

    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        if self.chance(0.8):
            meta["key"] = self.pick("a", "b", "")
        if self.chance(0.25):
            meta["passthrough"] = self.pick(True, False)
        return meta

    def filter(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"ranges": [self.bounds() for _ in range(self.rng.randint(1, 2))]}
        if self.chance(0.3):
            spec["attribute"] = self.pick("id", "company")
        if self.chance(0.5):
            spec["seed"] = self.pick("s", "")
        if self.chance(0.3):
            spec["hashVersion"] = self.pick(1, 2)
        return spec

    def parent(self) -> dict[str, Any]:
        parent: dict[str, Any] = {"id": self.pick(*KEYS, "missing")}
        if self.chance(0.8):
            parent["condition"] = self.pick(
                {"value": True}, {"value": {"$exists": True}}, {"value": "b"}, {}
            )
        if self.chance(0.5):
            parent["gate"] = self.pick(True, False)
        return parent

    def condition(self) -> Any:
        if self.chance(0.3):
            return self.data.draw(conditions())
        return self.pick(
            {"a": "fr"},
            {"a": {"$in": ["fr", "B", "a"]}},
            {"b": {"$ini": ["FR"]}},
            {"id": {"$exists": True}},
            {"$or": [{"a": "a"}, {"b": {"$regex": "^1"}}]},
            {"a": {"$vgte": "1.2.3"}},
        )

    def attributes(self) -> dict[str, Any]:
        attributes: dict[str, Any] = {}
        if self.chance(0.9):
            attributes["id"] = self.pick(*UNITS) if self.chance(0.85) else self.pick("", 0, 3, True)
        if self.chance(0.4):
            attributes["company"] = self.pick(*UNITS)
        for name in ("a", "b"):
            if self.chance(0.6):
                attributes[name] = self.pick(*STRINGS)
        return attributes

    def forced(self) -> dict[str, int] | None:
        if self.chance(0.8):
            return None
        return {self.pick("e1", "e2", "f1"): self.rng.randint(-1, 3)}


def experiment_fields_of(result: Any) -> tuple[Any, ...] | None:
    if result is None:
        return None
    return tuple(getattr(result, name) for name in type(result).__slots__)


def feature_fields(result: Any) -> tuple[Any, ...]:
    return (
        result.value,
        result.source,
        result.rule_id,
        experiment_fields_of(result.experiment),
        [experiment_fields_of(e) for e in result.exposures],
    )


def fields_of(evaluate: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    return feature_fields(evaluate(*args, **kwargs))


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False), data=st.data(), groups=saved_groups | st.none())
def test_features_agree(rng: random.Random, data: st.DataObject, groups: Any) -> None:
    payloads = Payloads(rng, data)
    payload = payloads.payload()
    flags = FeatureSet(payload)
    for _ in range(4):
        attrs = payloads.attributes()
        options = {"saved_groups": groups, "forced_variations": payloads.forced()}
        for key in [*KEYS, "missing"]:
            want = outcome(fields_of, oracle_flags.evaluate, payload, key, attrs, **options)
            assert outcome(fields_of, evaluate, payload, key, attrs, **options) == want
            assert outcome(fields_of, flags.evaluate, key, attrs, **options) == want


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False), data=st.data())
def test_experiments_agree(rng: random.Random, data: st.DataObject) -> None:
    payloads = Payloads(rng, data)
    experiment = {"key": "e1", **payloads.experiment()}
    payloads.hashing(experiment)
    if payloads.chance(0.2):
        experiment["parentConditions"] = [payloads.parent()]
    if payloads.chance(0.1):
        experiment["force"] = payloads.pick(None, 0, 1, 5)
    payload, attrs, forced = payloads.payload(), payloads.attributes(), payloads.forced()

    def run(module: Any) -> Any:
        result = module.run_experiment(
            experiment, attrs, features=payload, forced_variations=forced
        )
        return experiment_fields_of(result)

    assert outcome(run, flags_module) == outcome(run, oracle_flags)


MALFORMED_RULES: list[Any] = [
    [{"force": 1}, 5],
    [5, {"force": 1}],
    [{"force": 1, "range": [0]}],
    [{"force": 1, "range": 0.5, "coverage": 0.2}],
    [{"parentConditions": [{"condition": {}}], "force": 1}],
    [{"parentConditions": [{"id": "f2", "gate": True}, {"nope": 1}], "force": 1}],
    [{"parentConditions": 5, "force": 1}],
    [{"variations": ["a", "b"], "namespace": ["ns"]}],
    [{"variations": ["a", "b"], "namespace": [3, 0, 1]}],
    [{"variations": 5}],
    [{"variations": ["a", "b"], "meta": [None, {"key": "b"}]}],
    [{"variations": ["a", "b"], "ranges": [[0, 0.5], [0.5]]}],
    [{"variations": ["a", "b"], "weights": 3}],
    [{"variations": ["a", "b"], "coverage": "all"}],
    [{"variations": ["a", "b"], "filters": [{"seed": "s"}]}],
    [{"filters": 5}],
    [{"force": 1, "condition": {"$and": 5}}, {"force": 2, "condition": {"a": {"$vgt": 10**400}}}],
]


@pytest.mark.parametrize(
    "rules", MALFORMED_RULES, ids=[str(i) for i in range(len(MALFORMED_RULES))]
)
def test_malformed_payloads_fail_as_they_did(rules: list[Any]) -> None:
    payload = {"f1": {"defaultValue": 0, "rules": rules}, "f2": {"defaultValue": True}}
    for attrs in ({"id": "u1", "a": "1.0.0"}, {"id": "user-2"}, {}, {"id": 0}):
        want = outcome(fields_of, oracle_flags.evaluate, payload, "f1", attrs)
        assert outcome(fields_of, evaluate, payload, "f1", attrs) == want

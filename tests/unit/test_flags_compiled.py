"""The compiled flag evaluator gives what the straightforward one gives (``tests/oracle``), on
random conditions, payloads and attributes: the same value, source, rule, experiment result
and exposures, and the same error where the payload is malformed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sextant.schemas.conditions import compile_condition, eval_condition
from tests.oracle import conditions as oracle_conditions

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


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """What a call gives: its value, or the type of what it raised (NaN equal to itself)."""
    try:
        value = call()
    except Exception as error:  # noqa: BLE001 - the type is the comparison
        return "raised", type(error)
    return "value", value


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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

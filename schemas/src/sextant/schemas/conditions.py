"""GrowthBook's condition language: which units a feature rule targets, by their attributes.

A condition is a MongoDB-like JSON object: ``{"country": {"$in": ["FR", "DE"]}, "plan": "pro"}``
holds when every entry holds. Entries compare an attribute (a dotted path into the unit's
attributes) with a literal or with operators: ``$eq $ne $lt $lte $gt $gte $in $nin $ini $nini
$all $alli $elemMatch $size $exists $type $regex $regexi $notRegex $notRegexi $not``, version
comparisons ``$veq $vne $vlt $vlte $vgt $vgte`` (``1.10.0 > 1.9.2``, ``1.0.0 > 1.0.0-beta``),
saved groups ``$inGroup $notInGroup $savedGroup``; and the logical ``$and $or $nor $not``.

The semantics are JavaScript's, as GrowthBook's SDKs define them (its conformance suite's
``evalCondition`` cases pass against this module): values of different JSON types never
compare equal or ordered, ``true`` is not ``1``, strings order by UTF-16 code units. A
malformed condition, or an operator this module does not know, never matches.

A condition is compiled into a function of the attributes (:func:`compile_condition`): the
document is read once, regular expressions, version operands and ``$in`` sets are prepared
then, and a call only looks up the attributes it tests. :func:`eval_condition` compiles and
calls; feature flags keep the compiled form for as long as their payload.

This module is part of the SDK's wheel (``sdk/python/hatch_build.py``): standard library only.
The browser SDK's ``sdk/js/src/conditions.ts`` is its port, checked against the same cases.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, NoReturn

__all__ = [
    "CONDITION_ERRORS",
    "Test",
    "compile_condition",
    "condition_test",
    "eval_condition",
    "get_path",
    "js_number",
    "js_string",
    "padded_version",
]

Attributes = Mapping[str, Any]
SavedGroups = Mapping[str, Any]

Test = Callable[[Any, SavedGroups], bool]
"""A compiled condition (of attributes) or value test (of one value), given the saved groups.
It may raise one of :data:`CONDITION_ERRORS` where the condition is malformed or a value
cannot be compared: the whole condition then does not match."""

CONDITION_ERRORS = (TypeError, ValueError, AttributeError, IndexError, RecursionError, re.error)
_ERRORS = CONDITION_ERRORS
_NO_GROUPS: SavedGroups = {}


def eval_condition(
    attributes: Any, condition: Mapping[str, Any], saved_groups: SavedGroups | None = None
) -> bool:
    """Whether ``attributes`` satisfy ``condition`` (an empty condition holds)."""
    return compile_condition(condition)(attributes, saved_groups)


def compile_condition(condition: Mapping[str, Any]) -> Callable[[Any, SavedGroups | None], bool]:
    """``condition`` as a function of (attributes, saved groups), for evaluating it often."""
    test = condition_test(condition)

    def holds(attributes: Any, saved_groups: SavedGroups | None = None) -> bool:
        try:
            return test(attributes, saved_groups or _NO_GROUPS)
        except _ERRORS:
            return False

    return holds


def condition_test(condition: Any) -> Test:
    """``condition`` compiled, unguarded: the caller treats :data:`CONDITION_ERRORS` as a
    condition that does not match (an error anywhere fails the whole condition, even under
    ``$not`` or ``$or``, as in GrowthBook's SDKs)."""
    return _condition(condition, frozenset())


# --- the compiler: a malformed part fails when reached, as evaluating it would --------------


def _raise(_a: Any = None, _g: Any = None) -> NoReturn:
    raise TypeError("malformed condition")


def _always(_a: Any, _g: SavedGroups) -> bool:
    return True


def _never(_a: Any, _g: SavedGroups) -> bool:
    return False


def _negated(test: Test) -> Test:
    return lambda a, g: not test(a, g)


def _all(tests: list[Test]) -> Test:
    if not tests:
        return _always
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda a, g: first(a, g) and second(a, g)

    def every(a: Any, g: SavedGroups) -> bool:
        for test in tests:  # noqa: SIM110 - a loop: no generator on the hot path
            if not test(a, g):
                return False
        return True

    return every


def _any(tests: list[Test]) -> Test:
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda a, g: first(a, g) or second(a, g)

    def some(a: Any, g: SavedGroups) -> bool:
        for test in tests:  # noqa: SIM110 - a loop: no generator on the hot path
            if test(a, g):
                return True
        return False

    return some


def _condition(condition: Any, seen: frozenset[str]) -> Test:
    try:
        entries = list(condition.items())
    except _ERRORS:
        return _raise
    return _all([_entry(key, value, seen) for key, value in entries])


def _entry(key: Any, value: Any, seen: frozenset[str]) -> Test:
    if key == "$or":
        return _any_of(value, seen)
    if key == "$nor":
        return _negated(_any_of(value, seen))
    if key == "$and":
        return _all_of(value, seen)
    if key == "$not":
        return _negated(_condition(value, seen))
    if key == "$savedGroup":
        return _saved_group(value, seen)
    if not isinstance(key, str):
        return _raise
    return _field(key, _value(value, seen))


def _any_of(conditions: Any, seen: frozenset[str]) -> Test:
    try:
        if not conditions:
            return _always
        tests = [_condition(c, seen) for c in conditions]
    except _ERRORS:
        return _raise
    return _any(tests)


def _all_of(conditions: Any, seen: frozenset[str]) -> Test:
    try:
        tests = [_condition(c, seen) for c in conditions]
    except _ERRORS:
        return _raise
    return _all(tests)


def _field(path: str, test: Test) -> Test:
    if "." in path:
        return lambda a, g: test(get_path(a, path), g)
    # A top-level attribute of a plain dict is its ``get``: get_path's own first step.
    return lambda a, g: test(a.get(path) if type(a) is dict else get_path(a, path), g)


def _saved_group(reference: Any, seen: frozenset[str]) -> Test:
    if not isinstance(reference, dict):
        return _never
    group_id = reference.get("id")
    key = reference.get("attributeKey")
    if (
        not isinstance(group_id, str)
        or group_id in seen
        or ("attributeKey" in reference and (not isinstance(key, str)))
    ):
        return _never
    inner_seen = seen | {group_id}

    def in_group(attributes: Any, groups: SavedGroups) -> bool:
        entry = groups.get(group_id)
        if not isinstance(entry, dict):
            return False
        if entry.get("type") == "list":
            name = key if key is not None else entry.get("attributeKey")
            values = entry.get("values")
            if not isinstance(name, str) or not isinstance(values, list):
                return False
            return _is_in(get_path(attributes, name), values)
        if entry.get("type") == "condition":
            inner = entry.get("condition")
            return isinstance(inner, dict) and _condition(inner, inner_seen)(attributes, groups)
        return False

    return in_group


def _value(expected: Any, seen: frozenset[str], fold: bool = False) -> Test:
    """The test of one value against ``expected``: operators, or a literal to equal."""
    if type(expected) is dict:
        try:
            operators = _is_operators(expected)
        except _ERRORS:
            return _raise
        if operators:
            return _all([_operator(op, arg, seen) for op, arg in expected.items()])
    if isinstance(expected, str):
        if fold:
            lowered = expected.lower()
            return lambda a, g: js_string(a).lower() == lowered
        return lambda a, g: a == expected if type(a) is str else js_string(a) == expected
    if isinstance(expected, bool):
        return lambda a, g: a is not None and _truthy(a) == expected
    if isinstance(expected, int | float):
        return lambda a, g: _to_number(a) == expected
    if expected is None:
        return lambda a, g: a is None
    return lambda a, g: _json_equal(a, expected)


def _operator(op: str, arg: Any, seen: frozenset[str]) -> Test:
    compile_operator = _OPERATORS.get(op)
    return _never if compile_operator is None else compile_operator(op, arg, seen)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "$lt": operator.lt,
    "$lte": operator.le,
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$veq": operator.eq,
    "$vne": operator.ne,
    "$vlt": operator.lt,
    "$vlte": operator.le,
    "$vgt": operator.gt,
    "$vgte": operator.ge,
}


def _version_op(op: str, arg: Any, _seen: frozenset[str]) -> Test:
    compare = _COMPARE[op]
    try:
        target = padded_version(arg)
    except Exception:  # noqa: BLE001 - it fails again, when reached, as it always did
        return lambda a, g: bool(compare(padded_version(a), padded_version(arg)))

    def version(a: Any, g: SavedGroups) -> bool:
        return compare(_padded(a) if type(a) is str and a else padded_version(a), target)

    return version


def _order_op(op: str, arg: Any, _seen: frozenset[str]) -> Test:
    compare = _COMPARE[op]
    kind = type(arg)
    if (kind is int or kind is float) and arg == arg:  # a number, not NaN

        def numbers(a: Any, g: SavedGroups) -> bool:
            if type(a) is kind and a == a:
                return compare(a, arg)
            order = _loose_compare(a, arg)
            return order is not None and compare(order, 0)

        return numbers

    def loose(a: Any, g: SavedGroups) -> bool:
        order = _loose_compare(a, arg)
        return order is not None and compare(order, 0)

    return loose


def _exists_op(_op: str, arg: Any, _seen: frozenset[str]) -> Test:
    if _truthy(arg):
        return lambda a, g: a is not None
    return lambda a, g: a is None


def _in_op(op: str, arg: Any, _seen: frozenset[str]) -> Test:
    if type(arg) is not list:
        return _never
    negated = op in ("$nin", "$nini")
    if op in ("$ini", "$nini"):
        # A string is in the list when it equals one of its strings, case folded.
        folded = frozenset(v.lower() for v in arg if isinstance(v, str))

        def in_folded(a: Any, g: SavedGroups) -> bool:
            found = a.lower() in folded if type(a) is str else _is_in(a, arg, fold=True)
            return found is not negated

        return in_folded
    strings = frozenset(v for v in arg if type(v) is str)

    def in_list(a: Any, g: SavedGroups) -> bool:
        found = a in strings if type(a) is str else _is_in(a, arg)
        return found is not negated

    return in_list


def _in_group_op(op: str, arg: Any, _seen: frozenset[str]) -> Test:
    wanted = op == "$inGroup"

    def in_group(a: Any, groups: SavedGroups) -> bool:
        values = _saved_values(groups.get(arg) if isinstance(arg, str) else None)
        if values is None:
            return False
        return _is_in(a, values) == wanted

    return in_group


def _not_op(_op: str, arg: Any, seen: frozenset[str]) -> Test:
    return _negated(_value(arg, seen))


def _size_op(_op: str, arg: Any, seen: frozenset[str]) -> Test:
    test = _value(arg, seen)
    return lambda a, g: isinstance(a, list) and test(len(a), g)


def _elem_match_op(_op: str, arg: Any, seen: frozenset[str]) -> Test:
    try:
        on_value = _is_operators(arg)
    except _ERRORS:
        return lambda a, g: isinstance(a, list) and _raise()
    test = _value(arg, seen) if on_value else _condition(arg, seen)

    def elem_match(a: Any, g: SavedGroups) -> bool:
        if not isinstance(a, list):
            return False
        for item in a:  # noqa: SIM110 - a loop: no generator on the hot path
            if item is not None and test(item, g):
                return True
        return False

    return elem_match


def _all_op(op: str, arg: Any, seen: frozenset[str]) -> Test:
    if not isinstance(arg, list):
        return _never
    tests = [_value(e, seen, fold=op == "$alli") for e in arg]

    def contains_all(a: Any, g: SavedGroups) -> bool:
        if not isinstance(a, list):
            return False
        return all(any(test(item, g) for item in a) for test in tests)

    return contains_all


def _regex_op(op: str, arg: Any, _seen: frozenset[str]) -> Test:
    try:
        search = _regex(arg, op == "$regexi").search
    except _ERRORS:
        return _never

    def matches(a: Any, g: SavedGroups) -> bool:
        if type(a) is str:
            return search(a) is not None
        try:
            return search(js_string(a)) is not None
        except _ERRORS:
            return False

    return matches


def _type_op(_op: str, arg: Any, _seen: frozenset[str]) -> Test:
    return lambda a, g: bool(_type(a) == arg)


def _eq_op(op: str, arg: Any, _seen: frozenset[str]) -> Test:
    if op == "$eq":
        return lambda a, g: _strict_equal(a, arg)
    return lambda a, g: not _strict_equal(a, arg)


_OPERATORS: dict[str, Callable[[str, Any, frozenset[str]], Test]] = {
    "$eq": _eq_op,
    "$ne": _eq_op,
    "$exists": _exists_op,
    "$type": _type_op,
    "$not": _not_op,
    "$size": _size_op,
    "$elemMatch": _elem_match_op,
    "$all": _all_op,
    "$alli": _all_op,
    "$regex": _regex_op,
    "$regexi": _regex_op,
    "$inGroup": _in_group_op,
    "$notInGroup": _in_group_op,
}
_OPERATORS |= dict.fromkeys(("$lt", "$lte", "$gt", "$gte"), _order_op)
_OPERATORS |= dict.fromkeys(("$veq", "$vne", "$vlt", "$vlte", "$vgt", "$vgte"), _version_op)
_OPERATORS |= dict.fromkeys(("$in", "$nin", "$ini", "$nini"), _in_op)
"""Each operator's compiler; an operator not here never matches."""


# --- paths, types and JavaScript's coercions, as GrowthBook's reference SDK relies on them ---


def get_path(attributes: Any, path: str) -> Any:
    """The value at a dotted ``path``; ``None`` when any step is missing (lists expose their
    indices and ``length``, as JavaScript's ``in`` does)."""
    current = attributes
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part == "length":
            current = len(current)
        elif isinstance(current, list) and _index(part, len(current)):
            current = current[int(part)]
        else:
            return None
    return current


def _index(key: str, length: int) -> bool:
    return (
        len(key) <= 10
        and key.isascii()
        and key.isdigit()
        and (key == "0" or key[0] != "0")
        and int(key) < length
    )


def _type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "unknown"


def _is_operators(value: Any) -> bool:
    if type(value) is not dict or not value:
        return False
    for key in value:  # noqa: SIM110 - a loop: no generator on the hot path
        if key[:1] != "$":
            return False
    return True


def js_string(value: Any) -> str:
    """``String(value)`` in JavaScript."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return js_number(value)
    if isinstance(value, list):
        return ",".join("" if v is None else js_string(v) for v in value)
    return "[object Object]"


_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*(?:e[+-]?\d+)?|\.\d+(?:e[+-]?\d+)?|Infinity)$", re.I)


def _to_number(value: Any) -> float:
    """``Number(value)`` in JavaScript."""
    if value is None or value is False:
        return 0.0
    if value is True:
        return 1.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list | str):
        text = (js_string(value) if isinstance(value, list) else value).strip()
        if not text:
            return 0.0
        if text.lower().startswith(("0x", "0o", "0b")) and len(text) > 2:
            try:
                return float(int(text, 0))
            except ValueError:
                return math.nan
        if (_NUMBER.match(text) and "infinity" not in text.lower()[1:]) or text in (
            "Infinity",
            "+Infinity",
            "-Infinity",
        ):
            return float(text)
        return math.nan
    return math.nan


def _loose_compare(a: Any, b: Any) -> int | None:
    """JavaScript's relational comparison of ``a`` and ``b``: -1, 0, 1, or None when
    unordered (a NaN on either side)."""
    if isinstance(a, str) and isinstance(b, str):
        if not (a.isascii() and b.isascii()):
            a, b = a.encode("utf-16-be", "surrogatepass"), b.encode("utf-16-be", "surrogatepass")
        return int(a > b) - int(a < b)
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        # Objects and arrays compare as their strings.
        pa = a if not isinstance(a, dict | list) else js_string(a)
        pb = b if not isinstance(b, dict | list) else js_string(b)
        if isinstance(pa, str) and isinstance(pb, str):
            return _loose_compare(pa, pb)
        a, b = pa, pb
    x, y = _to_number(a), _to_number(b)
    if math.isnan(x) or math.isnan(y):
        return None
    return (x > y) - (x < y)


def _strict_equal(a: Any, b: Any) -> bool:
    """``a === b`` for values parsed separately (objects and arrays are never equal)."""
    kind = _type(a)
    return kind == _type(b) and kind not in ("array", "object") and bool(a == b)


def _json_equal(a: Any, b: Any) -> bool:
    """``JSON.stringify(a) === JSON.stringify(b)``."""
    kind = _type(a)
    if kind != _type(b):
        return False
    if kind == "array":
        return len(a) == len(b) and all(
            _json_equal(_json(x), _json(y)) for x, y in zip(a, b, strict=True)
        )
    if kind == "object":
        return _key_order(a) == _key_order(b) and all(
            _json_equal(_json(a[k]), _json(b[k])) for k in a
        )
    return bool(a == b)


def _json(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _key_order(obj: dict[Any, Any]) -> list[Any]:
    keys = list(obj)
    indices = [k for k in keys if isinstance(k, str) and _index(k, 2**32 - 1)]
    return sorted(indices, key=int) + [k for k in keys if k not in indices]


# --- values ------------------------------------------------------------------------------


def _truthy(value: Any) -> bool:
    if value is None or value is False or value == "":
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0 and not math.isnan(value)
    return True


def _is_in(actual: Any, values: list[Any], fold: bool = False) -> bool:
    def norm(v: Any) -> Any:
        return v.lower() if fold and isinstance(v, str) else v

    def same(a: Any, b: Any) -> bool:
        # Array.prototype.includes: SameValueZero (NaN includes NaN).
        nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
        return nan or _strict_equal(norm(a), norm(b))

    if not fold and type(actual) is str:
        for v in values:  # noqa: SIM110 - a loop: no generator on the hot path
            if type(v) is str and v == actual:
                return True
        return False
    if isinstance(actual, list):
        return any(same(a, v) for a in actual for v in values)
    return any(same(actual, v) for v in values)


def _regex(pattern: str, fold: bool) -> re.Pattern[str]:
    # JavaScript's RegExp source, with unescaped slashes escaped as GrowthBook does.
    return _compiled(re.sub(r"([^\\])/", r"\1\\/", pattern), fold)


@lru_cache(maxsize=512)
def _compiled(pattern: str, fold: bool) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE if fold else 0)


def _saved_values(entry: Any) -> list[Any] | None:
    if entry is None:
        return []
    if isinstance(entry, list):
        return entry
    if isinstance(entry, dict) and entry.get("type") == "list":
        values = entry.get("values")
        return values if isinstance(values, list) else None
    return None


def js_number(value: float) -> str:
    """A number as JavaScript's ``String(number)`` writes it (``1.0`` → ``"1"``, ``1e21``)."""
    x = float(value)
    if math.isnan(x):
        return "NaN"
    if x == 0:
        return "0"
    if x < 0:
        return "-" + js_number(-x)
    if math.isinf(x):
        return "Infinity"
    mantissa, _, exp = repr(x).partition("e")
    whole, _, fraction = mantissa.partition(".")
    padded = (whole + fraction).lstrip("0")
    digits = padded.rstrip("0")
    k = len(digits)
    n = int(exp or "0") - len(fraction) + len(padded)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    head = digits[0] + ("." + digits[1:] if k > 1 else "")
    return head + "e" + ("+" if n > 0 else "-") + str(abs(n - 1))


def padded_version(value: Any) -> str:
    """A version string that compares as text in version order: ``v1.2.3-rc.1+build`` →
    parts padded to five characters, and ``~`` after a release without a pre-release tag."""
    if _type(value) == "number":
        value = js_number(value)
    if not value or not isinstance(value, str):
        value = "0"
    return _padded(value)


_STRIP = re.compile(r"(^v|\+.*$)")
_SPLIT = re.compile(r"[-.]")


@lru_cache(maxsize=1024)
def _padded(value: str) -> str:
    parts = _SPLIT.split(_STRIP.sub("", value))
    if len(parts) == 3:
        parts.append("~")
    return "-".join(p.rjust(5, " ") if p.isdigit() else p for p in parts)

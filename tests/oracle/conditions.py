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

This module is part of the SDK's wheel (``sdk/python/hatch_build.py``): standard library only.
The browser SDK's ``sdk/js/src/conditions.ts`` is its port, checked against the same cases.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

__all__ = ["eval_condition", "get_path", "js_number", "js_string", "padded_version"]

Attributes = Mapping[str, Any]
SavedGroups = Mapping[str, Any]

_ERRORS = (TypeError, ValueError, AttributeError, IndexError, RecursionError, re.error)


def eval_condition(
    attributes: Any, condition: Mapping[str, Any], saved_groups: SavedGroups | None = None
) -> bool:
    """Whether ``attributes`` satisfy ``condition`` (an empty condition holds)."""
    try:
        return _condition(attributes, condition, saved_groups or {}, frozenset())
    except _ERRORS:
        return False


def _condition(
    attributes: Any, condition: Mapping[str, Any], groups: SavedGroups, seen: frozenset[str]
) -> bool:
    for key, value in condition.items():
        if key == "$or":
            if not _or(attributes, value, groups, seen):
                return False
        elif key == "$nor":
            if _or(attributes, value, groups, seen):
                return False
        elif key == "$and":
            if not all(_condition(attributes, c, groups, seen) for c in value):
                return False
        elif key == "$not":
            if _condition(attributes, value, groups, seen):
                return False
        elif key == "$savedGroup":
            if not _saved_group(attributes, value, groups, seen):
                return False
        elif not _value(value, get_path(attributes, key), groups, seen):
            return False
    return True


def _or(attributes: Any, conditions: Any, groups: SavedGroups, seen: frozenset[str]) -> bool:
    return not conditions or any(_condition(attributes, c, groups, seen) for c in conditions)


def _saved_group(
    attributes: Any, reference: Any, groups: SavedGroups, seen: frozenset[str]
) -> bool:
    if not isinstance(reference, dict):
        return False
    group_id = reference.get("id")
    key = reference.get("attributeKey")
    if (
        not isinstance(group_id, str)
        or group_id in seen
        or ("attributeKey" in reference and (not isinstance(key, str)))
    ):
        return False
    entry = groups.get(group_id)
    if not isinstance(entry, dict):
        return False
    if entry.get("type") == "list":
        key = key if key is not None else entry.get("attributeKey")
        values = entry.get("values")
        if not isinstance(key, str) or not isinstance(values, list):
            return False
        return _is_in(get_path(attributes, key), values)
    if entry.get("type") == "condition":
        inner = entry.get("condition")
        return isinstance(inner, dict) and _condition(attributes, inner, groups, seen | {group_id})
    return False


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


# --- JavaScript's coercions, as GrowthBook's reference SDK relies on them ----------------


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


# --- values and operators ------------------------------------------------------------------


def _value(
    expected: Any, actual: Any, groups: SavedGroups, seen: frozenset[str], fold: bool = False
) -> bool:
    if type(expected) is dict and _is_operators(expected):
        for op, arg in expected.items():
            test = _OPERATORS.get(op)
            if test is None or not test(actual, arg, groups, seen, op):
                return False
        return True
    if isinstance(expected, str):
        if fold:
            return js_string(actual).lower() == expected.lower()
        return js_string(actual) == expected
    if isinstance(expected, bool):
        return actual is not None and _truthy(actual) == expected
    if isinstance(expected, int | float):
        return _to_number(actual) == expected
    if expected is None:
        return actual is None
    if not _is_operators(expected):
        return _json_equal(actual, expected)
    return all(_operator(op, actual, arg, groups, seen) for op, arg in expected.items())


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


def _in_all(
    expected: list[Any], actual: Any, groups: SavedGroups, seen: frozenset[str], fold: bool
) -> bool:
    if not isinstance(actual, list):
        return False
    return all(any(_value(e, a, groups, seen, fold) for a in actual) for e in expected)


def _elem_match(condition: Any, actual: Any, groups: SavedGroups, seen: frozenset[str]) -> bool:
    if not isinstance(actual, list):
        return False
    on_value = _is_operators(condition)
    return any(
        _value(condition, item, groups, seen)
        if on_value
        else _condition(item, condition, groups, seen)
        for item in actual
        if item is not None
    )


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


_ORDER = {
    "$lt": lambda c: c < 0,
    "$lte": lambda c: c <= 0,
    "$gt": lambda c: c > 0,
    "$gte": lambda c: c >= 0,
}
_VERSION = {
    "$veq": lambda a, b: a == b,
    "$vne": lambda a, b: a != b,
    "$vlt": lambda a, b: a < b,
    "$vlte": lambda a, b: a <= b,
    "$vgt": lambda a, b: a > b,
    "$vgte": lambda a, b: a >= b,
}


def _operator(op: str, actual: Any, arg: Any, groups: SavedGroups, seen: frozenset[str]) -> bool:
    if op in _VERSION:
        return bool(_VERSION[op](padded_version(actual), padded_version(arg)))
    if op == "$eq":
        return _strict_equal(actual, arg)
    if op == "$ne":
        return not _strict_equal(actual, arg)
    if op in _ORDER:
        order = _loose_compare(actual, arg)
        return order is not None and bool(_ORDER[op](order))
    if op == "$exists":
        return (actual is not None) if _truthy(arg) else (actual is None)
    if op in ("$in", "$nin", "$ini", "$nini"):
        if not isinstance(arg, list):
            return False
        found = _is_in(actual, arg, fold=op in ("$ini", "$nini"))
        return found if op in ("$in", "$ini") else not found
    if op in ("$inGroup", "$notInGroup"):
        values = _saved_values(groups.get(arg) if isinstance(arg, str) else None)
        if values is None:
            return False
        return _is_in(actual, values) == (op == "$inGroup")
    if op == "$not":
        return not _value(arg, actual, groups, seen)
    if op == "$size":
        return isinstance(actual, list) and _value(arg, len(actual), groups, seen)
    if op == "$elemMatch":
        return _elem_match(arg, actual, groups, seen)
    if op in ("$all", "$alli"):
        return isinstance(arg, list) and _in_all(arg, actual, groups, seen, op == "$alli")
    if op in ("$regex", "$regexi"):
        try:
            return _regex(arg, op == "$regexi").search(js_string(actual)) is not None
        except _ERRORS:
            return False
    if op == "$type":
        return bool(_type(actual) == arg)
    return False


def _version_op(actual: Any, arg: Any, _g: SavedGroups, _s: frozenset[str], op: str) -> bool:
    return bool(_VERSION[op](padded_version(actual), padded_version(arg)))


def _order_op(actual: Any, arg: Any, _g: SavedGroups, _s: frozenset[str], op: str) -> bool:
    kind = type(actual)
    numbers = kind is type(arg) and (kind is int or kind is float)
    if numbers and actual == actual and arg == arg:  # neither is NaN
        return bool(_ORDER[op](int(actual > arg) - int(actual < arg)))
    order = _loose_compare(actual, arg)
    return order is not None and bool(_ORDER[op](order))


def _in_op(actual: Any, arg: Any, _g: SavedGroups, _s: frozenset[str], op: str) -> bool:
    if type(arg) is not list:
        return False
    found = _is_in(actual, arg, fold=op in ("$ini", "$nini"))
    return found if op in ("$in", "$ini") else not found


def _regex_op(actual: Any, arg: Any, _g: SavedGroups, _s: frozenset[str], op: str) -> bool:
    try:
        return _regex(arg, op == "$regexi").search(js_string(actual)) is not None
    except _ERRORS:
        return False


def _exists_op(actual: Any, arg: Any, _g: SavedGroups, _s: frozenset[str], _op: str) -> bool:
    return (actual is not None) if _truthy(arg) else (actual is None)


def _generic_op(actual: Any, arg: Any, groups: SavedGroups, seen: frozenset[str], op: str) -> bool:
    return _operator(op, actual, arg, groups, seen)


_OPERATORS: dict[str, Any] = dict.fromkeys(
    (
        "$eq",
        "$ne",
        "$inGroup",
        "$notInGroup",
        "$not",
        "$size",
        "$elemMatch",
        "$all",
        "$alli",
        "$type",
    ),
    _generic_op,
)
_OPERATORS |= {"$regex": _regex_op, "$regexi": _regex_op, "$exists": _exists_op}
_OPERATORS |= dict.fromkeys(_VERSION, _version_op)
_OPERATORS |= dict.fromkeys(_ORDER, _order_op)
_OPERATORS |= dict.fromkeys(("$in", "$nin", "$ini", "$nini"), _in_op)
"""Each operator's test; an operator not here never matches."""


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

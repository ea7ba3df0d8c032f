"""What a project keeps of personal data at ingest: properties dropped, hashed or truncated.

The collector applies a project's rules to every event before anything of it is written to
Kafka (the dead-letter topic included), so no topic or table holds what the project said not
to keep. Rules name top-level keys of ``properties``, ``traits`` and ``context.traits``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

PROPERTY_NAME = r"^[A-Za-z_$][A-Za-z0-9_$.\- ]{0,127}$"


class PiiAction(StrEnum):
    DROP = "drop"
    HASH = "hash"
    """HMAC-SHA256 keyed with a key derived from the master key (``SEXTANT_SECRET_KEY``) and
    the project: equal values stay equal (joins, unique counts), the value cannot be read
    back, and another deployment or project cannot match it."""
    TRUNCATE = "truncate"
    """Keep the first ``keep_characters`` characters (of a scalar's text); others dropped."""


class PiiRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    property: Annotated[str, Field(pattern=PROPERTY_NAME)]
    action: PiiAction
    keep_characters: int = Field(default=0, ge=0, le=1000)

    @model_validator(mode="after")
    def _truncate_keeps_something(self) -> PiiRule:
        if (self.action is PiiAction.TRUNCATE) != (self.keep_characters > 0):
            raise ValueError("keep_characters (> 0) goes with truncate, and only with it")
        return self


def keyed_hash(key: bytes, project_id: str, value: Any) -> str:
    """The hash a ``hash`` rule stores in place of ``value``: hex HMAC-SHA256."""
    message = project_id.encode() + b"\x00" + orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _apply(
    values: Mapping[str, Any], rules: Sequence[PiiRule], key: bytes | None, project_id: str
) -> dict[str, Any]:
    kept = dict(values)
    for rule in rules:
        if rule.property not in kept:
            continue
        value = kept.pop(rule.property)
        if rule.action is PiiAction.HASH and key is not None:
            kept[rule.property] = keyed_hash(key, project_id, value)
        elif rule.action is PiiAction.TRUNCATE and not isinstance(value, dict | list):
            text = value if isinstance(value, str) else orjson.dumps(value).decode()
            kept[rule.property] = text[: rule.keep_characters]
        # drop, a hash without a key, a truncated object or list: nothing is kept
    return kept


def redact(
    event: Mapping[str, Any], rules: Sequence[PiiRule], key: bytes | None, project_id: str
) -> dict[str, Any]:
    """``event`` (a Segment-shaped JSON object) with ``rules`` applied; without a ``key``,
    values to hash are dropped rather than kept."""
    out = dict(event)
    for field in ("properties", "traits", "$set"):
        if isinstance(out.get(field), dict):
            out[field] = _apply(out[field], rules, key, project_id)
    context = out.get("context")
    if isinstance(context, dict) and isinstance(context.get("traits"), dict):
        out["context"] = {**context, "traits": _apply(context["traits"], rules, key, project_id)}
    return out

"""The bytes of an envelope on ``events.raw``: the Envelope's JSON with its wire aliases.

``Envelope.model_dump_json(by_alias=True)`` walks every ``Any`` value through pydantic's
serializer; orjson over the model's fields writes the same bytes in a third of the time,
which is a tenth of the collector's CPU per event. A unit test keeps the two identical.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel

from sextant.schemas.events import Envelope

_ALIASES = {
    name: field.serialization_alias or field.alias or name
    for name, field in Envelope.model_fields.items()
}
_OPTIONS = orjson.OPT_UTC_Z


def _fallback(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def envelope_json(envelope: Envelope) -> bytes:
    """``envelope`` as JSON with camelCase aliases, as ``model_dump_json(by_alias=True)``."""
    fields = envelope.__dict__
    return orjson.dumps(
        {_ALIASES[name]: fields[name] for name in _ALIASES}, default=_fallback, option=_OPTIONS
    )

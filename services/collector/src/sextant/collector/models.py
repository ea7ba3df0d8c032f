"""The answer to an accepted request, as the OpenAPI schema shows it."""

from __future__ import annotations

import orjson
from pydantic import BaseModel, Field

from sextant.schemas.events import FieldError


class Rejection(BaseModel):
    """One event that was not accepted (it went to the dead-letter topic), and why."""

    index: int = Field(description="Position of the event in the request's batch (0 for one)")
    messageId: str | None = Field(default=None, description="The event's own id, if it had one")  # noqa: N815 - wire name
    errors: list[FieldError]


class BatchResult(BaseModel):
    """200: the request was taken; accepted events are in Kafka, rejected ones dead-lettered."""

    accepted: int
    rejected: list[Rejection] = Field(default_factory=list)


def result_json(result: BatchResult) -> bytes:
    """``orjson.dumps(result.model_dump())``, without the model's walk when nothing was
    rejected (nearly every answer)."""
    if result.rejected:
        return orjson.dumps(result.model_dump())
    return b'{"accepted":%d,"rejected":[]}' % result.accepted


BATCH_RESULT_EXAMPLE = {
    "accepted": 1,
    "rejected": [
        {
            "index": 1,
            "messageId": "m-2",
            "errors": [{"field": "userId", "message": "userId or anonymousId is required"}],
        }
    ],
}

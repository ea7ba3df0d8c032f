"""What the client raises at the call site, and what it reports through ``on_error``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from sextant.schemas.events import FieldError

FailureReason = Literal["rejected", "http_status", "gave_up", "shutdown"]
"""Why events were not delivered:

* ``rejected``: the collector took the batch but refused these events (its per-event errors);
* ``http_status``: the collector refused the whole batch with a status that is not retried
  (4xx other than 429: a bad or revoked write key, a body it could not read);
* ``gave_up``: network errors, 429 or 5xx went on for longer than the retry budget;
* ``shutdown``: the client was shut down before they could be delivered.
"""


class EventValidationError(ValueError):
    """An event the collector would refuse; raised by ``track`` & co. before it is queued."""

    def __init__(self, problems: list[FieldError]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.field or 'event'}: {p.message}" for p in problems))

    @classmethod
    def from_pydantic(cls, error: ValidationError) -> EventValidationError:
        return cls(
            [
                FieldError(field=".".join(str(part) for part in item["loc"]), message=item["msg"])
                for item in error.errors(include_url=False)
            ]
        )


@dataclass(eq=False)
class DeliveryError(Exception):
    """Events that will not reach the collector, passed to the client's ``on_error``.

    ``events`` are the events as they were sent (wire format, camelCase); ``problems`` holds the
    collector's reasons for ``rejected`` events, by ``messageId``.
    """

    reason: FailureReason
    message: str
    events: list[dict[str, Any]]
    status: int | None = None
    attempts: int = 0
    problems: dict[str, list[FieldError]] = field(default_factory=dict)

    def __str__(self) -> str:
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{len(self.events)} event(s) not delivered, {self.reason}{status}: {self.message}"

"""Checking one event: its size, the envelope's rules, and the project's tracking plan."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from sextant.core.config_plane import ConfigState
from sextant.schemas.config import TrackingPlan
from sextant.schemas.events import (
    EventType,
    FieldError,
    IncomingEvent,
    call_traits,
    event_name,
)

_LEADING_FIELD = re.compile(r"^(?:Value error, )?([A-Za-z_$][A-Za-z0-9_$]*) ")
_MODEL_FIELDS = {"userId", "anonymousId", "event", "groupId", "previousId", "messageId"}
_validate_event = IncomingEvent.__pydantic_validator__.validate_python
"""``IncomingEvent.model_validate`` without its Python wrapper, a sixth of its cost per event."""


class RejectReason:
    """The ``reason`` label of rejected events (metrics) and the kind of a rejection."""

    INVALID = "invalid"
    TOO_LARGE = "too_large"
    TRACKING_PLAN = "tracking_plan"


class Checked(NamedTuple):
    """The outcome for one event: a valid event (maybe flagged) or a reason and errors."""

    event: IncomingEvent | None = None
    errors: Sequence[FieldError] = ()
    reason: str = ""
    violations: Sequence[str] = ()


def _field_of(error: ErrorDetails, names: Mapping[str, str]) -> str:
    loc = [str(part) for part in error["loc"]]
    if not loc:
        # A rule across fields: name the field it is about (its message starts with it).
        match = _LEADING_FIELD.match(error["msg"])
        if match and match.group(1) in _MODEL_FIELDS:
            loc = [match.group(1)]
    if loc:
        loc[0] = names.get(loc[0], loc[0])
    return ".".join(loc)


def _message(error: ErrorDetails, names: Mapping[str, str]) -> str:
    message = error["msg"].removeprefix("Value error, ")
    for segment_name, own_name in names.items():
        message = message.replace(segment_name, own_name)
    return message


def field_errors(error: ValidationError, names: Mapping[str, str]) -> list[FieldError]:
    return [
        FieldError(field=_field_of(e, names), message=_message(e, names)) for e in error.errors()
    ]


def check_event(
    raw: Any,
    *,
    max_bytes: int,
    measure: bool,
    names: Mapping[str, str],
    plan: PlanCheck | None,
) -> Checked:
    """Validate one Segment-shaped event; ``measure`` when it may be larger than ``max_bytes``."""
    if not isinstance(raw, dict):
        return Checked(
            errors=[FieldError(field="", message="an event must be a JSON object")],
            reason=RejectReason.INVALID,
        )
    if measure:
        size = len(orjson.dumps(raw))
        if size > max_bytes:
            message = f"the event is {size} bytes; the limit is {max_bytes} bytes"
            return Checked(
                errors=[FieldError(field="", message=message)], reason=RejectReason.TOO_LARGE
            )
    try:
        event: IncomingEvent = _validate_event(raw)
    except ValidationError as error:
        return Checked(errors=field_errors(error, names), reason=RejectReason.INVALID)
    if plan is None:
        return Checked(event=event)
    violations = plan.violations(event)
    if violations and plan.enforce:
        return Checked(errors=violations, reason=RejectReason.TRACKING_PLAN)
    return Checked(event=event, violations=[f"{v.field}: {v.message}" for v in violations])


class PlanCheck:
    """A project's tracking plan, compiled: JSON Schema per event name.

    The schema of an event name checks the event's ``properties`` (``traits`` for identify and
    group calls). Events the plan does not name pass. ``enforce`` rejects violations; ``flag``
    accepts the event and lists them in ``plan_violations``.
    """

    def __init__(self, plans: Iterable[TrackingPlan]) -> None:
        self.enforce = False
        self._validators: dict[str, Draft202012Validator] = {}
        for plan in sorted(plans, key=lambda p: p.id):
            self.enforce = self.enforce or plan.mode == "enforce"
            for name, schema in plan.events.items():
                try:
                    Draft202012Validator.check_schema(schema)
                except SchemaError:
                    continue  # an unusable schema checks nothing rather than refusing all
                self._validators[name] = Draft202012Validator(schema)

    def violations(self, event: IncomingEvent) -> list[FieldError]:
        validator = self._validators.get(event_name(event))
        if validator is None:
            return []
        checked_field = (
            "traits" if event.type in (EventType.IDENTIFY, EventType.GROUP) else "properties"
        )
        document = call_traits(event) if checked_field == "traits" else event.properties
        return [
            FieldError(
                field=".".join([checked_field, *(str(p) for p in error.absolute_path)]),
                message=error.message,
            )
            for error in validator.iter_errors(document)
        ]


class TrackingPlans:
    """Compiled tracking plans per project, recompiled when the config plane changes them."""

    def __init__(self, state: ConfigState) -> None:
        self._state = state
        self._compiled: dict[str, PlanCheck | None] = {}
        self._lock = threading.Lock()
        self._generation = 0
        state.subscribe(self._changed)

    def _changed(self, key: str, _document: object) -> None:
        if key.startswith("tracking_plan:"):
            with self._lock:
                self._generation += 1
                self._compiled.clear()

    def for_project(self, project_id: str) -> PlanCheck | None:
        try:
            return self._compiled[project_id]
        except KeyError:
            pass
        generation = self._generation
        plans = self._state.of_kind(TrackingPlan, project_id)
        check = PlanCheck(plans) if plans else None
        with self._lock:
            if generation == self._generation:  # else a newer plan arrived meanwhile
                self._compiled[project_id] = check
        return check

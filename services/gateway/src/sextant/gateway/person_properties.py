"""Person properties in queries: filters and breakdowns that name a property of the person.

A filter or a breakdown of trends, funnels and retention names an event's property by
default; with ``"type": "person"`` it names a property of the event's person, whatever id
the event was sent under. A person's value is the one ``GET /v1/persons/{id}`` shows: over
the identify calls and the events with ``$set`` of all the person's ids, in event time, the
newest that sets it (PostHog's ``$set``; a Segment identify's traits) wins, and PostHog's
``$set_once`` counts only when no call sets it (the earliest then). The values are computed
in the warehouse per query, for the named properties only, grouped by the same
``person_key`` the query counts by, and joined to the events on it; an event whose person
lacks the property reads it as missing (a breakdown's ``null``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from sextant.gateway.persons import SETS_PERSON_PROPERTIES, person_events
from sextant.gateway.sql import Params, check_property, filter_on, property_text, property_value
from sextant.schemas.config import PROPERTY_PATTERN, PropertyFilter, PropertyName

PropertyType = Literal["event", "person"]
_TYPE_DESCRIPTION = "Whose property: the event's (default) or the event's person's"


class QueryFilter(PropertyFilter):
    """A property filter of a query, on the event's property or on its person's."""

    type: PropertyType = Field(default="event", description=_TYPE_DESCRIPTION)


class Breakdown(BaseModel):
    """A breakdown by the event's property or by its person's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    property: PropertyName
    type: PropertyType = Field(default="event", description=_TYPE_DESCRIPTION)


def _named(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if not PROPERTY_PATTERN.fullmatch(value):  # refused as the plain name it always was
        raise PydanticCustomError(
            "string_pattern_mismatch",
            "String should match pattern '{pattern}'",
            {"pattern": PROPERTY_PATTERN.pattern},
        )
    return {"property": value}


BreakdownField = Annotated[
    Breakdown, BeforeValidator(_named, json_schema_input_type=PropertyName | Breakdown)
]
"""A request's breakdown: a plain name is the event's property, as it always was."""
BREAKDOWN_DESCRIPTION = (
    'A property name (the event\'s), or {"property", "type": "event" | "person"}'
)


# PostHog's calls ($identify, $set, and $set or $set_once sent with any captured event)
# carry $set or $set_once properties; an identify's traits merge the two, so its $set alone
# says what it sets. A Segment identify sets its traits; other events set nothing else.
_POSTHOG_CALL = f"(type != 'identify' OR {SETS_PERSON_PROPERTIES})"


class PersonProperties:
    """The person properties one query names, computed once and joined by ``person_key``."""

    def __init__(self, params: Params, project_id: str) -> None:
        self._params = params
        self._project_id = project_id
        self._columns: dict[str, str] = {}

    @property
    def used(self) -> bool:
        return bool(self._columns)

    def value(self, name: str, parameter: str) -> str:
        """The column holding the person's value of ``name`` (``Dynamic``, as an event
        property's)."""
        check_property(name, parameter)
        return self._columns.setdefault(name, f"_pp{len(self._columns)}")

    def scan(self, source: str, where: str, after_join: str = "1") -> str:
        """What follows ``FROM``: the rows of ``source`` (with ``person_key``) matching
        ``where``, each with its person's values when the query names any, and matching
        ``after_join`` (which may read them)."""
        if not self.used:
            return f"{source} WHERE {where} AND {after_join}"
        return (
            f"(SELECT * FROM {source} WHERE {where}) AS _ev"
            f" LEFT ANY JOIN {self._values()} AS _pp ON _ev.person_key = _pp._pp_key"
            f" WHERE {after_join}"
        )

    def _values(self) -> str:
        add = self._params.add
        rows = [f"{_POSTHOG_CALL} AS _posthog"]
        values = []
        sets_one = []  # an event other than an identify counts when it sets a named property
        for name, column in self._columns.items():
            set_path, once_path = add(f"$set.{name}", "String"), add(f"$set_once.{name}", "String")
            rows.append(
                f"if(_posthog, getSubcolumn(properties, {set_path}),"
                f" getSubcolumn(traits, {add(name, 'String')})) AS {column}_set"
            )
            rows.append(f"getSubcolumn(properties, {once_path}) AS {column}_once")
            sets_one += [
                f"dynamicType(getSubcolumn(properties, {path})) != 'None'"
                for path in (set_path, once_path)
            ]
            values.append(
                f"if(countIf(dynamicType({column}_set) != 'None') > 0,"
                f" argMaxIf({column}_set, timestamp, dynamicType({column}_set) != 'None'),"
                f" argMinIf({column}_once, timestamp, dynamicType({column}_once) != 'None'))"
                f" AS {column}"
            )
        project = add(self._project_id, "String")
        return (
            f"(SELECT person_key AS _pp_key, {', '.join(values)}"
            f" FROM (SELECT person_key, timestamp, {', '.join(rows)}"
            f" FROM {person_events(self._params, self._project_id)}"
            f" WHERE project_id = {project} AND (type = 'identify' OR {' OR '.join(sets_one)}))"
            " GROUP BY person_key)"
        )


def filters_sql(
    params: Params,
    persons: PersonProperties,
    filters: Sequence[PropertyFilter],
    parameter: str,
    of: PropertyType | None = None,
) -> str:
    """The filters ANDed (``1`` when none): those of type ``of`` only, when given. A person
    filter reads its column of ``persons``: use it where :meth:`PersonProperties.scan`'s
    ``after_join`` is."""
    parts = []
    for i, item in enumerate(filters):
        kind = _type_of(item)
        if of is not None and kind != of:
            continue
        name = f"{parameter}.{i}"
        if kind == "person":
            value = persons.value(item.property, name)
        else:
            value = property_value(params, item.property, name)
        parts.append(filter_on(params, item, value, name))
    return " AND ".join(parts) if parts else "1"


def breakdown_sql(
    params: Params, persons: PersonProperties, breakdown: Breakdown | None, parameter: str
) -> str:
    """SQL of a row's breakdown value as text ('' when missing, or without a breakdown)."""
    if breakdown is None:
        return "''"
    if breakdown.type == "person":
        return f"toString({persons.value(breakdown.property, parameter)})"
    return property_text(params, breakdown.property, parameter)


def _type_of(item: PropertyFilter) -> PropertyType:
    return item.type if isinstance(item, QueryFilter) else "event"

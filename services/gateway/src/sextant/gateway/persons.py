"""Persons at query time: every id read through the resolver's overrides.

An id's person is its newest override (``person_map``), or the id itself when no edge joined
it. :func:`person_events` is ``events_unique`` with a ``person_id`` column; unique users,
trends, funnels, retention and experiment units count that column, so an event sent before
the edge that links its id is counted for its person as soon as the override is written.
"""

from __future__ import annotations

from sextant.gateway.sql import Params


def _map(params: Params, project_id: str) -> str:
    project = params.add(project_id, "String")
    return (
        "(SELECT distinct_id AS _mapped_id, person_id AS _person FROM person_map"
        f" WHERE project_id = {project})"
    )


def with_person(params: Params, project_id: str, source: str, id_sql: str) -> str:
    """``source`` (a table or a subquery, aliased ``_src``) with a ``person_id`` column: the
    person of ``id_sql`` (an expression over ``_src``'s columns). Filters on ``source``'s
    columns are pushed below the join."""
    return (
        f"(SELECT _src.*, if(_pm._person = '', {id_sql}, _pm._person) AS person_id"
        f" FROM {source} AS _src LEFT ANY JOIN {_map(params, project_id)} AS _pm"
        f" ON {id_sql} = _pm._mapped_id)"
    )


def person_events(params: Params, project_id: str, id_sql: str = "_src.distinct_id") -> str:
    """``events_unique`` with ``person_id``: use it in place of the view."""
    return with_person(params, project_id, "events_unique", id_sql)

"""The ClickHouse cluster layout on the embedded engine, which has no cluster: every statement
of the migrations' cluster form, and stand-in tables made from those statements that carry the
Distributed tables' names and columns, for the gateway's queries to run against.

A stand-in is the cluster form read back for one node that is every shard and every replica:
``t_local``'s definition (its columns, sorting key and engine family, without replication)
under the name ``t`` of the Distributed table in front of it. Statements that only concern
the Distributed table (its creation, its copy of an ``ALTER``) have nothing to do then.
"""

from __future__ import annotations

import re

from sextant.core.migrations import load_migrations, statements
from sextant.core.warehouse import Warehouse
from sextant.core.warehouse_cluster import LAYOUTS

CLUSTER = "sextant"
_REPLICATED = re.compile(r"Replicated(\w*MergeTree)\('[^']*', '\{replica\}'(?:, )?")
_LOCAL = re.compile(r"\b(\w+)_local\b")
_ALTER = re.compile(r"^ALTER TABLE (\w+) ")


def cluster_form() -> list[tuple[str, str]]:
    """(migration name, statement) of every statement ``sextant migrate`` runs on a cluster."""
    return [(m.name, s) for m in load_migrations() for s in statements(m, CLUSTER)]


def standin(statement: str) -> str | None:
    """What ``statement`` of the cluster form does on a one-node stand-in (None: nothing)."""
    if "ENGINE = Distributed(" in statement:
        return None
    if (alter := _ALTER.match(statement)) and LAYOUTS.get(alter.group(1), None) is not None:
        layout = LAYOUTS[alter.group(1)]
        if layout.sharding_key is not None:  # the Distributed table's copy of the change
            return None
    sql = statement.replace(f" ON CLUSTER {CLUSTER}", "")
    sql = _REPLICATED.sub(r"\1(", sql)
    return _LOCAL.sub(r"\1", sql)


def migrate_standin(warehouse: Warehouse) -> None:
    """The stand-in tables and views, made from the cluster form of every migration."""
    for _, statement in cluster_form():
        if (sql := standin(statement)) is not None:
            warehouse.command(sql)

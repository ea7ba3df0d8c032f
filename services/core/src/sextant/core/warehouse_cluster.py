"""The migrations' statements for a ClickHouse cluster (``SEXTANT_CLICKHOUSE_CLUSTER``).

The SQL files in ``schemas/clickhouse/migrations`` are written for one server (and the
embedded engine). On a cluster each of their statements becomes one or two, run ``ON CLUSTER``:

* a table ``t`` becomes ``t_local``, its engine the replicated one of the same family
  (``ReplacingMergeTree(version)`` → ``ReplicatedReplacingMergeTree('<path>', '{replica}',
  version)``), one copy per replica of each shard, and a ``Distributed`` table ``t`` in front,
  with ``t``'s name and columns, sharded as :data:`LAYOUTS` says. Readers and the sink use
  ``t`` as before, so the gateway's queries do not change;
* a table that every shard must hold whole (person overrides: a person's ids may sit on
  several shards) stays ``t``, replicated to every node (its Keeper path has no shard), with
  no ``Distributed`` table;
* a view is created on every node, over the ``Distributed`` tables; ``ALTER TABLE t`` changes
  ``t_local`` and ``t`` alike; ``DROP VIEW`` drops it everywhere.

Rows that must be folded together (a ReplacingMergeTree key, all versions of a metric
window, a person's events for a funnel) land on one shard, because each sharding key is a
function of columns of the table's sorting key. Statements this module does not know raise
:class:`UnknownStatement`, so a new migration's form is noticed by the tests
(``tests/unit/test_warehouse_cluster.py``), not on a customer's cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "LAYOUTS",
    "ClusterLayout",
    "UnknownStatement",
    "cluster_statements",
    "ledger_statement",
    "local_name",
]

KEEPER_ROOT = "/clickhouse/tables"


@dataclass(frozen=True)
class ClusterLayout:
    sharding_key: str | None
    """``Distributed``'s sharding expression; ``None``: a whole copy on every node."""


LAYOUTS: dict[str, ClusterLayout] = {
    # A person's events on one shard (funnels, retention, a unit's metric in experiment
    # results), projects spread over every shard; duplicates of a message share the key.
    "events": ClusterLayout("cityHash64(project_id, distinct_id)"),
    # A unit's exposures beside its events (the same hash of the same values when the unit is
    # the user): experiment results join the two.
    "exposures": ClusterLayout("cityHash64(project_id, unit_id)"),
    # Every version of a window on one shard: FINAL keeps the newest.
    "metric_points": ClusterLayout("cityHash64(project_id, metric)"),
    "invalid_events": ClusterLayout("cityHash64(project_id, kafka_partition, kafka_offset)"),
    "alert_events": ClusterLayout("cityHash64(project_id, rule_id)"),
    # Every version of a partition's sums on one shard: FINAL keeps the newest.
    "experiment_statistics": ClusterLayout("cityHash64(project_id, experiment)"),
    # Person overrides (the persons' tables): read beside events on every shard.
    "person_overrides": ClusterLayout(None),
    "identity_decisions": ClusterLayout("cityHash64(project_id, edge_partition, edge_offset)"),
}


class UnknownStatement(ValueError):  # noqa: N818 - the name says what it is
    """A migration statement the cluster rewrite has no rule for."""


def local_name(table: str) -> str:
    return f"{table}_local"


def mutation(table: str, change: str, cluster: str | None) -> str:
    """``ALTER TABLE <table> <change>`` (a ``DELETE`` or ``UPDATE``) where it runs: on a
    cluster, on every node's local table (a ``Distributed`` table takes no mutation; a whole
    copy is its own local table), waiting for every replica."""
    if cluster is None:
        return f"ALTER TABLE {table} {change} SETTINGS mutations_sync = 1"
    name = table if _layout(table).sharding_key is None else local_name(table)
    return f"ALTER TABLE {name} ON CLUSTER {cluster} {change} SETTINGS mutations_sync = 2"


_CREATE_TABLE = re.compile(
    r"^CREATE TABLE IF NOT EXISTS (?P<name>\w+)\s*(?P<body>\(.*?\)\s*)"
    r"ENGINE = (?P<engine>\w*MergeTree)(?:\((?P<args>[^)]*)\))?(?P<rest>.*)$",
    re.DOTALL,
)
_CREATE_VIEW = re.compile(
    r"^CREATE VIEW (?P<ine>IF NOT EXISTS )?(?P<name>\w+) AS(?P<query>.*)$", re.DOTALL
)
_DROP_VIEW = re.compile(r"^DROP VIEW IF EXISTS (?P<name>\w+)$")
_ALTER_TABLE = re.compile(r"^ALTER TABLE (?P<name>\w+) (?P<change>.*)$", re.DOTALL)
_CODEC = re.compile(r"\s+CODEC\((?:[^()]|\([^()]*\))*\)")
_DEDUP_WINDOW = re.compile(r"^non_replicated_deduplication_window\s*=")
_SETTINGS = re.compile(r"(?P<space>\s*)SETTINGS (?P<list>[^\n]*)\s*$")


def _layout(table: str) -> ClusterLayout:
    if table not in LAYOUTS:
        raise UnknownStatement(
            f"table {table!r} has no cluster layout: add it to sextant.core.warehouse_cluster"
            ".LAYOUTS (a sharding key made of its sorting key's columns, or None)"
        )
    return LAYOUTS[table]


def _replicated_engine(engine: str, args: str | None, path: str) -> str:
    extra = f", {args.strip()}" if args and args.strip() else ""
    return f"Replicated{engine}('{path}', '{{replica}}'{extra})"


def _replicated_settings(rest: str) -> str:
    """``rest`` without the single-server deduplication window: replicated tables remember
    the blocks (and insert tokens) of their last inserts in Keeper by default (10,000 blocks
    within an hour, ``replicated_deduplication_window``), more than the single server's."""
    found = _SETTINGS.search(rest)
    if found is None:
        return rest
    kept = [s for s in found["list"].split(",") if not _DEDUP_WINDOW.match(s.strip())]
    tail = f"{found['space']}SETTINGS {','.join(kept).strip()}" if kept else ""
    return rest[: found.start()] + tail


def _create_table(match: re.Match[str], cluster: str) -> list[str]:
    name = match["name"]
    layout = _layout(name)
    rest = _replicated_settings(match["rest"])
    if layout.sharding_key is None:
        path = f"{KEEPER_ROOT}/all/{{database}}/{name}"
        engine = _replicated_engine(match["engine"], match["args"], path)
        return [
            f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER {cluster} {match['body']}"
            f"ENGINE = {engine}{rest}"
        ]
    local = local_name(name)
    path = f"{KEEPER_ROOT}/{{shard}}/{{database}}/{local}"
    engine = _replicated_engine(match["engine"], match["args"], path)
    return [
        f"CREATE TABLE IF NOT EXISTS {local} ON CLUSTER {cluster} {match['body']}"
        f"ENGINE = {engine}{rest}",
        f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER {cluster} AS {local}\n"
        f"ENGINE = Distributed({cluster}, currentDatabase(), {local}, {layout.sharding_key})",
    ]


def cluster_statements(statement: str, cluster: str) -> list[str]:
    """The statements that do on ``cluster`` what ``statement`` does on one server."""
    sql = statement.strip()
    if match := _CREATE_TABLE.match(sql):
        return _create_table(match, cluster)
    if match := _CREATE_VIEW.match(sql):
        ine = match["ine"] or ""
        return [f"CREATE VIEW {ine}{match['name']} ON CLUSTER {cluster} AS{match['query']}"]
    if match := _DROP_VIEW.match(sql):
        return [f"DROP VIEW IF EXISTS {match['name']} ON CLUSTER {cluster}"]
    if match := _ALTER_TABLE.match(sql):
        name, change = match["name"], match["change"]
        if _layout(name).sharding_key is None:
            return [f"ALTER TABLE {name} ON CLUSTER {cluster} {change}"]
        # The local tables first: the Distributed table only reads what they have. It stores
        # nothing, so a column's codec is left out there.
        return [
            f"ALTER TABLE {local_name(name)} ON CLUSTER {cluster} {change}",
            f"ALTER TABLE {name} ON CLUSTER {cluster} {_CODEC.sub('', change)}",
        ]
    raise UnknownStatement(f"no cluster form for: {sql[:80]!r}")


def ledger_statement(cluster: str | None) -> str:
    """The migrations ledger: on a cluster, one replicated copy on every node, so any node
    says what was applied."""
    columns = (
        "(version UInt32, name String, checksum String,"
        " applied_at DateTime64(3, 'UTC') DEFAULT now64(3))"
    )
    if cluster is None:
        return (
            f"CREATE TABLE IF NOT EXISTS schema_migrations {columns}"
            " ENGINE = ReplacingMergeTree ORDER BY version"
        )
    path = f"{KEEPER_ROOT}/all/{{database}}/schema_migrations"
    return (
        f"CREATE TABLE IF NOT EXISTS schema_migrations ON CLUSTER {cluster} {columns}"
        f" ENGINE = ReplicatedReplacingMergeTree('{path}', '{{replica}}') ORDER BY version"
    )

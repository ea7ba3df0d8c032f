"""The migrations' cluster form: replicated tables per shard, Distributed tables in front
under the single-server names, sharding keys that keep foldable rows together."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from sextant.core.migrations import load_migrations, statements
from sextant.core.settings import ClickHouseSection
from sextant.core.warehouse_cluster import (
    LAYOUTS,
    UnknownStatement,
    cluster_statements,
    ledger_statement,
    mutation,
)

CLUSTER = "sextant"
ALL = [s for m in load_migrations() for s in statements(m, CLUSTER)]
SINGLE = [s for m in load_migrations() for s in m.statements()]
_ORDER_BY = re.compile(r"ORDER BY \((?P<columns>[^\n]*)\)")
_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS (\w+)\s")


def _created_tables(sqls: list[str]) -> set[str]:
    return {m.group(1) for s in sqls if (m := _TABLE.match(s))}


def test_every_statement_runs_on_the_whole_cluster() -> None:
    assert len(ALL) > len(SINGLE)
    assert all(f" ON CLUSTER {CLUSTER} " in s or s.endswith(f"ON CLUSTER {CLUSTER}") for s in ALL)


def test_each_table_is_replicated_per_shard_behind_a_distributed_table_of_its_name() -> None:
    everywhere = {"person_overrides"}  # a whole copy on every node
    single = _created_tables(SINGLE) - everywhere
    assert single == {
        "events",
        "invalid_events",
        "exposures",
        "metric_points",
        "alert_events",
        "experiment_statistics",
        "identity_decisions",
    }
    assert _created_tables(ALL) == single | everywhere | {f"{t}_local" for t in single}
    for table in single:
        (local,) = [s for s in ALL if s.startswith(f"CREATE TABLE IF NOT EXISTS {table}_local ")]
        assert "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/" in local
        assert f"{{database}}/{table}_local', '{{replica}}'" in local
        # Keeper remembers the last 10,000 inserted blocks (and tokens) within an hour.
        assert "deduplication_window" not in local
        assert local.rstrip().endswith(")")
        (front,) = [s for s in ALL if s.startswith(f"CREATE TABLE IF NOT EXISTS {table} ")]
        assert front.endswith(
            f"AS {table}_local\nENGINE = Distributed({CLUSTER}, currentDatabase(), "
            f"{table}_local, {LAYOUTS[table].sharding_key})"
        )


def test_a_replacing_version_column_is_kept() -> None:
    (points,) = [s for s in ALL if s.startswith("CREATE TABLE IF NOT EXISTS metric_points_local")]
    assert "'{replica}', version)" in points


def test_sharding_keys_are_made_of_sorting_key_columns() -> None:
    """Rows a FINAL or a GROUP BY folds together (same sorting key) land on one shard."""
    for statement in SINGLE:
        if not (table := _TABLE.match(statement)):
            continue
        order = _ORDER_BY.search(statement)
        assert order is not None
        sorting = {c.strip() for c in order["columns"].split(",")}
        key = LAYOUTS[table.group(1)].sharding_key
        if key is None:  # not sharded: a whole copy on every node
            continue
        columns = re.findall(r"\w+", key.removeprefix("cityHash64"))
        assert set(columns) <= sorting, (table.group(1), columns, sorting)


def test_events_are_sharded_by_project_and_person() -> None:
    assert LAYOUTS["events"].sharding_key == "cityHash64(project_id, distinct_id)"
    # A unit's exposures hash like its events when the unit is the user.
    assert LAYOUTS["exposures"].sharding_key == "cityHash64(project_id, unit_id)"


def test_views_and_alters_reach_every_node_and_both_tables() -> None:
    assert (
        "CREATE VIEW IF NOT EXISTS events_unique ON CLUSTER sextant AS\nSELECT * FROM events FINAL"
        in ALL
    )
    alters = [s for s in ALL if s.startswith("ALTER TABLE events")]
    assert alters == [
        "ALTER TABLE events_local ON CLUSTER sextant ADD COLUMN IF NOT EXISTS extra String "
        "DEFAULT '{}' CODEC(ZSTD(1)) AFTER context",
        "ALTER TABLE events ON CLUSTER sextant ADD COLUMN IF NOT EXISTS extra String "
        "DEFAULT '{}' AFTER context",
        "ALTER TABLE events_local ON CLUSTER sextant ADD COLUMN IF NOT EXISTS person_id String "
        "DEFAULT '' CODEC(ZSTD(1)) AFTER distinct_id",
        "ALTER TABLE events ON CLUSTER sextant ADD COLUMN IF NOT EXISTS person_id String "
        "DEFAULT '' AFTER distinct_id",
        "ALTER TABLE events_local ON CLUSTER sextant ADD COLUMN IF NOT EXISTS id_hash UInt64 "
        "DEFAULT cityHash64(distinct_id) AFTER person_id",
        "ALTER TABLE events ON CLUSTER sextant ADD COLUMN IF NOT EXISTS id_hash UInt64 "
        "DEFAULT cityHash64(distinct_id) AFTER person_id",
        "ALTER TABLE events_local ON CLUSTER sextant ADD COLUMN IF NOT EXISTS person_hash UInt64 "
        "DEFAULT 0 AFTER id_hash",
        "ALTER TABLE events ON CLUSTER sextant ADD COLUMN IF NOT EXISTS person_hash UInt64 "
        "DEFAULT 0 AFTER id_hash",
    ]
    assert "DROP VIEW IF EXISTS events_unique ON CLUSTER sextant" in ALL


def test_other_table_settings_are_kept() -> None:
    (local, _) = cluster_statements(
        "CREATE TABLE IF NOT EXISTS events (a UInt8) ENGINE = MergeTree ORDER BY a\n"
        "SETTINGS index_granularity = 4096, non_replicated_deduplication_window = 1000",
        CLUSTER,
    )
    assert local.endswith("ORDER BY a\nSETTINGS index_granularity = 4096")


def test_person_overrides_are_whole_on_every_node() -> None:
    overrides = (
        "CREATE TABLE IF NOT EXISTS person_overrides\n(\n    project_id LowCardinality(String),\n"
        "    old_person_id String,\n    person_id String,\n    version UInt64\n)\n"
        "ENGINE = ReplacingMergeTree(version)\nORDER BY (project_id, old_person_id)"
    )
    (statement,) = cluster_statements(overrides, CLUSTER)
    assert statement.startswith("CREATE TABLE IF NOT EXISTS person_overrides ON CLUSTER sextant")
    assert (
        "ReplicatedReplacingMergeTree('/clickhouse/tables/all/{database}/person_overrides', "
        "'{replica}', version)" in statement
    )
    assert "Distributed" not in statement
    assert cluster_statements("ALTER TABLE person_overrides ADD COLUMN x UInt8", CLUSTER) == [
        "ALTER TABLE person_overrides ON CLUSTER sextant ADD COLUMN x UInt8"
    ]


def test_an_unknown_table_or_statement_is_refused() -> None:
    with pytest.raises(UnknownStatement, match="LAYOUTS"):
        cluster_statements(
            "CREATE TABLE IF NOT EXISTS sessions (a UInt8) ENGINE = MergeTree ORDER BY a", CLUSTER
        )
    with pytest.raises(UnknownStatement):
        cluster_statements("RENAME TABLE events TO old_events", CLUSTER)


def test_the_ledger_is_replicated_to_every_node() -> None:
    assert "ON CLUSTER" not in ledger_statement(None)
    statement = ledger_statement(CLUSTER)
    assert "schema_migrations ON CLUSTER sextant" in statement
    assert "/clickhouse/tables/all/{database}/schema_migrations" in statement


def test_the_cluster_name_is_an_identifier() -> None:
    assert ClickHouseSection(clickhouse_cluster="sextant").clickhouse_cluster == "sextant"
    with pytest.raises(ValidationError):
        ClickHouseSection(clickhouse_cluster="x; DROP TABLE events")


def test_mutations_run_on_each_nodes_own_tables() -> None:
    assert mutation("events", "DELETE WHERE 1", None) == (
        "ALTER TABLE events DELETE WHERE 1 SETTINGS mutations_sync = 1"
    )
    assert mutation("events", "DELETE WHERE 1", "c") == (
        "ALTER TABLE events_local ON CLUSTER c DELETE WHERE 1 SETTINGS mutations_sync = 2"
    )
    assert mutation("person_overrides", "DELETE WHERE 1", "c").startswith(
        "ALTER TABLE person_overrides ON CLUSTER c "
    )
    with pytest.raises(UnknownStatement):
        mutation("nowhere", "DELETE WHERE 1", "c")

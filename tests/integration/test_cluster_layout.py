"""The ClickHouse cluster layout, checked on the embedded engine: every statement of the
migrations' cluster form parses (``EXPLAIN AST``), and the stand-in tables made from it carry
the single-server tables' names and columns, so the gateway's queries, which name only those,
read them unchanged (``test_cluster_layout_queries.py`` runs them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sextant.core.migrations import migrate
from sextant.core.persons import PERSON_COLUMNS, person_predicate
from sextant.core.warehouse import Warehouse, connect
from sextant.core.warehouse_cluster import LAYOUTS, mutation
from sextant.sink.retention import RAW_TABLES
from tests.cluster_layout import cluster_form, migrate_standin

FORM = cluster_form()


@pytest.fixture(scope="module")
def engine(warehouse_root: Path) -> Warehouse:
    """The embedded engine, only to parse (no table is needed)."""
    return connect(f"chdb://{warehouse_root}?database=parse_only")


@pytest.mark.parametrize(
    ("migration", "statement"), FORM, ids=[f"{m}-{i}" for i, (m, _) in enumerate(FORM)]
)
def test_every_cluster_statement_parses(engine: Warehouse, migration: str, statement: str) -> None:
    ast = engine.query_rows(f"EXPLAIN AST {statement}")
    expected = {"CREATE": "CreateQuery", "ALTER": "AlterQuery", "DROP": "DropQuery"}
    assert ast[0][0].split()[0] == expected[statement.split()[0]], (migration, ast[0])


def _columns(warehouse: Warehouse) -> dict[str, list[tuple[str, str]]]:
    rows = warehouse.query_rows(
        "SELECT table, name, type FROM system.columns WHERE database = currentDatabase() "
        "AND table != 'schema_migrations' ORDER BY table, position"
    )
    found: dict[str, list[tuple[str, str]]] = {}
    for table, name, kind in rows:
        found.setdefault(str(table), []).append((str(name), str(kind)))
    return found


def test_standin_tables_have_the_single_server_names_and_columns(warehouse_url: str) -> None:
    single = connect(warehouse_url)
    migrate(single)
    standin = connect(warehouse_url.replace("?database=t", "?database=s"))
    migrate_standin(standin)
    assert _columns(standin) == _columns(single)
    keys = (
        "SELECT name, engine, sorting_key FROM system.tables WHERE database = currentDatabase() "
        "AND name != 'schema_migrations' ORDER BY name"
    )
    assert standin.query_rows(keys) == single.query_rows(keys)


_PARAMETERS = {"p": "acme", "hashes": ["0" * 64]}


def _sink_mutations(cluster: str | None) -> list[str]:
    """The deletions the sink runs: retention's per raw table, a person's per table."""
    raw = [
        mutation(table, f"DELETE WHERE project_id = {{p:String}} AND {column} < now()", cluster)
        for table, column in RAW_TABLES.items()
    ]
    persons = [
        mutation(table, f"DELETE WHERE {person_predicate(table)}", cluster)
        for table in PERSON_COLUMNS
    ]
    return raw + persons


@pytest.mark.parametrize("statement", _sink_mutations("sextant"))
def test_the_sinks_deletions_parse_for_the_cluster(engine: Warehouse, statement: str) -> None:
    ast = engine.query_rows(f"EXPLAIN AST {statement}", _PARAMETERS)
    assert ast[0][0].split()[0] == "AlterQuery", ast[0]
    # A Distributed table takes no mutation: sharded tables are changed on each node's own.
    table = statement.split()[2]
    assert table.endswith("_local") or LAYOUTS[table].sharding_key is None


def test_the_sinks_deletions_run_on_a_single_node(warehouse_url: str) -> None:
    single = connect(warehouse_url.replace("?database=t", "?database=m"))
    migrate(single)
    for statement in _sink_mutations(None):
        single.command(statement, _PARAMETERS)

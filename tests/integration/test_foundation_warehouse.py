from __future__ import annotations

from pathlib import Path

import pytest

from sextant.core.migrations import MigrationError, applied, load_migrations, migrate
from sextant.core.warehouse import Warehouse, connect


def test_migrations_apply_once_and_are_recorded(warehouse_url: str) -> None:
    handle = connect(warehouse_url)
    first = migrate(handle)
    assert first == [m.name for m in load_migrations()]
    assert migrate(handle) == []
    assert set(applied(handle)) == {m.version for m in load_migrations()}


def test_an_edited_applied_migration_is_reported(warehouse: Warehouse, tmp_path: Path) -> None:
    for migration in load_migrations():
        (tmp_path / migration.name).write_text(migration.sql + "\n-- edited\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(warehouse, tmp_path)


def test_each_test_gets_an_empty_database(warehouse: Warehouse) -> None:
    assert warehouse.query_rows("SELECT count() FROM events") == [(0,)]

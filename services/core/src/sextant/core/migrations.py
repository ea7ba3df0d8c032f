"""Versioned SQL migrations from ``schemas/clickhouse/migrations``, applied once each, in order.

File names are ``NNNN_description.sql``; statements are separated by a line ending in ``;``.
Applied versions are recorded in ``schema_migrations`` with a checksum, so running ``sextant
migrate`` twice changes nothing, and an edited applied migration is reported, not re-run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from sextant.core.warehouse import Warehouse

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_SCHEMAS_SOURCE = Path(__file__).resolve().parents[5] / "schemas" / "clickhouse" / "migrations"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        body = "\n".join(
            line for line in self.sql.splitlines() if not line.lstrip().startswith("--")
        )
        return [s.strip() for s in re.split(r";\s*(?:\n|$)", body) if s.strip()]


class MigrationError(RuntimeError):
    pass


def migrations_dir() -> Path:
    import sextant.schemas  # the wheel ships the SQL inside the package

    packaged = Path(sextant.schemas.__file__).parent / "clickhouse" / "migrations"
    return packaged if packaged.is_dir() else _SCHEMAS_SOURCE


def load_migrations(directory: Path | None = None) -> list[Migration]:
    folder = directory or migrations_dir()
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: expected NNNN_description.sql")
        found.append(Migration(int(match.group(1)), path.name, path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {folder}")
    return found


def _ensure_ledger(warehouse: Warehouse) -> None:
    warehouse.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version UInt32, name String, checksum String,"
        " applied_at DateTime64(3, 'UTC') DEFAULT now64(3))"
        " ENGINE = ReplacingMergeTree ORDER BY version"
    )


def applied(warehouse: Warehouse) -> dict[int, str]:
    """Applied versions and their checksums."""
    _ensure_ledger(warehouse)
    rows = warehouse.query_rows("SELECT version, checksum FROM schema_migrations FINAL")
    return {int(version): str(checksum) for version, checksum in rows}


def migrate(warehouse: Warehouse, directory: Path | None = None) -> list[str]:
    """Apply the pending migrations in order; returns the names applied now."""
    done = applied(warehouse)
    newly = []
    for migration in load_migrations(directory):
        if migration.version in done:
            if done[migration.version] != migration.checksum:
                raise MigrationError(f"{migration.name} changed after it was applied")
            continue
        for statement in migration.statements():
            warehouse.command(statement)
        warehouse.insert(
            "schema_migrations",
            [[migration.version, migration.name, migration.checksum]],
            ["version", "name", "checksum"],
        )
        newly.append(migration.name)
    return newly

"""Versioned SQL migrations from ``schemas/clickhouse/migrations``, applied once each, in order.

File names are ``NNNN_description.sql``; statements are separated by a line ending in ``;``.
Applied versions are recorded in ``schema_migrations`` with a checksum, so running ``sextant
migrate`` twice changes nothing, and an edited applied migration is reported, not re-run. On a
ClickHouse cluster the same files are applied in their cluster form (``warehouse_cluster``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from sextant.core.warehouse import Warehouse
from sextant.core.warehouse_cluster import cluster_statements, ledger_statement

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


def applied(warehouse: Warehouse, cluster: str | None = None) -> dict[int, str]:
    """Applied versions and their checksums."""
    warehouse.command(ledger_statement(cluster))
    rows = warehouse.query_rows("SELECT version, checksum FROM schema_migrations FINAL")
    return {int(version): str(checksum) for version, checksum in rows}


def statements(migration: Migration, cluster: str | None = None) -> list[str]:
    """What applying ``migration`` runs: its statements, or on a cluster their cluster forms
    (:mod:`sextant.core.warehouse_cluster`)."""
    if cluster is None:
        return migration.statements()
    return [out for s in migration.statements() for out in cluster_statements(s, cluster)]


def migrate(
    warehouse: Warehouse, directory: Path | None = None, cluster: str | None = None
) -> list[str]:
    """Apply the pending migrations in order; returns the names applied now.

    With ``cluster`` (``SEXTANT_CLICKHOUSE_CLUSTER``) every statement runs ``ON CLUSTER``:
    replicated tables on each shard, ``Distributed`` tables in front under the same names.
    """
    done = applied(warehouse, cluster)
    newly = []
    for migration in load_migrations(directory):
        if migration.version in done:
            if done[migration.version] != migration.checksum:
                raise MigrationError(f"{migration.name} changed after it was applied")
            continue
        for statement in statements(migration, cluster):
            warehouse.command(statement)
        warehouse.insert(
            "schema_migrations",
            [[migration.version, migration.name, migration.checksum]],
            ["version", "name", "checksum"],
        )
        newly.append(migration.name)
    return newly

"""Backups of the warehouse with ClickHouse's own ``BACKUP`` and ``RESTORE``
(``sextant warehouse backup`` / ``restore``).

A backup holds the whole database: every table with its data, the views, and the migrations
ledger, so a restored warehouse needs no ``sextant migrate`` beyond the versions it lacks.

* The embedded engine writes to ``File('<data path>/backups/<name>')``: its data path's
  ``backups`` folder is the only place it may write backups (``backups.allowed_path``, set by
  ``sextant.core.warehouse``). One process owns an embedded engine: stop the gateway (which
  runs the sink) before backing it up from the command line.
* A server writes to ``Disk('backups', '<name>')``: a disk named ``backups`` in the server's
  configuration (a local folder, or S3). On a cluster (``SEXTANT_CLICKHOUSE_CLUSTER``) the
  statements run ``ON CLUSTER``: each shard's replicated tables are backed up once.

``RESTORE`` creates the database and its tables; it refuses a table that already holds data,
so a restore goes into an empty deployment (or another database name: ``into``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sextant.core.warehouse import Warehouse, backup_dir

__all__ = ["BackupResult", "backup", "destination", "restore"]

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
_DATABASE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
SERVER_DISK = "backups"


@dataclass(frozen=True)
class BackupResult:
    id: str
    status: str
    destination: str


def destination(warehouse: Warehouse, name: str) -> str:
    """The backup destination of ``name`` for this warehouse, as SQL."""
    if not _NAME.match(name):
        raise ValueError(f"invalid backup name {name!r}: letters, digits, '_', '.', '-'")
    folder = backup_dir(warehouse.url)
    if folder is not None:
        return f"File('{folder}/{name}')"
    return f"Disk('{SERVER_DISK}', '{name}')"


def _database(value: str) -> str:
    if not _DATABASE.match(value):
        raise ValueError(f"invalid database name {value!r}")
    return value


def _on_cluster(cluster: str | None) -> str:
    return f" ON CLUSTER {_database(cluster)}" if cluster else ""


def _current(warehouse: Warehouse) -> str:
    return _database(str(warehouse.command("SELECT currentDatabase()")))


def backup(warehouse: Warehouse, name: str, cluster: str | None = None) -> BackupResult:
    """Back up the warehouse's database as ``name``; waits until the backup is written."""
    where = destination(warehouse, name)
    rows = warehouse.query_rows(
        f"BACKUP DATABASE `{_current(warehouse)}`{_on_cluster(cluster)} TO {where}"
    )
    backup_id, status = rows[0][0], rows[0][1]
    return BackupResult(str(backup_id), str(status), where)


def restore(
    warehouse: Warehouse,
    name: str,
    source: str | None = None,
    into: str | None = None,
    cluster: str | None = None,
) -> BackupResult:
    """Restore database ``source`` (default: this warehouse's database's name) of backup
    ``name`` as ``into`` (default: the same name)."""
    where = destination(warehouse, name)
    current = _current(warehouse)
    origin = _database(source or current)
    target = _database(into or current)
    rename = "" if target == origin else f" AS `{target}`"
    rows = warehouse.query_rows(
        f"RESTORE DATABASE `{origin}`{rename}{_on_cluster(cluster)} FROM {where}"
    )
    return BackupResult(str(rows[0][0]), str(rows[0][1]), where)

"""The ClickHouse adapter: one DSN, always through clickhouse-connect.

``chdb:///path`` opens the real ClickHouse engine in-process (one process may own a path);
``http(s)://user:pass@host:8123/db`` talks to a server. Nothing outside ``sextant.core``
imports clickhouse-connect.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

__all__ = ["ClickHouseError", "Warehouse", "backup_dir", "connect"]

_embedded: dict[str, Warehouse] = {}
_embedded_lock = threading.Lock()
_DATABASE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class Warehouse:
    """A thread-safe handle on the warehouse.

    The embedded engine is shared by every thread of the process, so calls are serialised; a
    server client is used the same way for simplicity (one connection per part is enough for
    the sink's batches and the gateway's short queries).
    """

    def __init__(self, client: Client, url: str) -> None:
        self._client = client
        self._lock = threading.RLock()
        self.url = url
        self.embedded = url.startswith("chdb:")

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        with self._lock:
            return self._client.command(sql, parameters=parameters)

    def query_rows(
        self,
        sql: str,
        parameters: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> list[tuple[Any, ...]]:
        with self._lock:
            result = self._client.query(sql, parameters=parameters, settings=settings)
            return [tuple(row) for row in result.result_rows]

    def query_dicts(
        self,
        sql: str,
        parameters: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        with self._lock:
            result = self._client.query(sql, parameters=parameters, settings=settings)
            return list(result.named_results())

    def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        dedup_token: str | None = None,
    ) -> None:
        """Insert ``rows``; a repeated ``dedup_token`` makes the insert a no-op."""
        settings = {"insert_deduplication_token": dedup_token} if dedup_token else None
        with self._lock:
            self._client.insert(table, rows, column_names=list(column_names), settings=settings)

    def insert_json(
        self,
        table: str,
        rows: bytes,
        column_names: Sequence[str],
        dedup_token: str | None = None,
    ) -> None:
        """Insert newline-separated JSON objects (``JSONEachRow``), one per row.

        The engine parses the rows itself, several times faster than sending Python values
        for ``JSON`` columns; timestamps may be ISO 8601 strings. Keys must be column names.
        A repeated ``dedup_token`` makes the insert a no-op.
        """
        settings: dict[str, Any] = {
            "date_time_input_format": "best_effort",
            "input_format_skip_unknown_fields": 0,
            # Text inside JSON columns stays text: "2026-05-01" is not turned into a Date,
            # so a property keeps one type whatever its values look like (and parses faster).
            "input_format_try_infer_dates": 0,
            "input_format_try_infer_datetimes": 0,
            # An object bound for a String column (events.extra) is stored as its JSON text.
            "input_format_json_read_objects_as_strings": 1,
        }
        if dedup_token:
            settings["insert_deduplication_token"] = dedup_token
        with self._lock:
            self._client.raw_insert(
                table, list(column_names), rows, settings=settings, fmt="JSONEachRow"
            )

    def ping(self) -> bool:
        try:
            with self._lock:
                return bool(self._client.command("SELECT 1") == 1)
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            return False

    def close(self) -> None:
        if not self.embedded:
            self._client.close()


def _database_of(url: str) -> str | None:
    """The database a DSN names: ``?database=`` for both kinds, or the path of a server URL."""
    parts = urlsplit(url)
    named = parse_qs(parts.query).get("database")
    if named:
        return named[0]
    if parts.scheme.startswith("chdb"):
        return None
    return parts.path.strip("/") or None


def _without_database(url: str) -> str:
    parts = urlsplit(url)
    query = urlencode({k: v for k, v in parse_qs(parts.query).items() if k != "database"}, True)
    path = parts.path if parts.scheme.startswith("chdb") else ""
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def backup_dir(url: str) -> str | None:
    """Where an embedded engine writes its backups (``BACKUP … TO File(…)``): ``backups``
    inside its data path; None for a server (its backups go to a disk of its own config)."""
    parts = urlsplit(url)
    return f"{parts.path.rstrip('/')}/backups" if parts.scheme.startswith("chdb") else None


def _engine_options(url: str) -> dict[str, Any]:
    folder = backup_dir(url)
    return {} if folder is None else {"chdb_options": {"backups.allowed_path": folder}}


def _open(url: str) -> Client:
    database = _database_of(url)
    options = _engine_options(url)
    if database is not None:
        if not _DATABASE.match(database):
            raise ValueError(f"invalid database name {database!r}")
        bootstrap = clickhouse_connect.get_client(dsn=_without_database(url), **options)
        bootstrap.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        return clickhouse_connect.get_client(
            dsn=_without_database(url), database=database, **options
        )
    return clickhouse_connect.get_client(dsn=url, **options)


def connect(url: str) -> Warehouse:
    """A warehouse handle for ``url``, creating its database if needed.

    ``chdb:///path?database=name`` selects a database inside the embedded engine (one process
    can open one path only, so tests isolate by database); embedded handles are cached.
    """
    if not url.startswith("chdb:"):
        return Warehouse(_open(url), url)
    with _embedded_lock:
        if url not in _embedded:
            _embedded[url] = Warehouse(_open(url), url)
        return _embedded[url]

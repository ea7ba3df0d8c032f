"""A running gateway for the gateway's integration tests: real Kafka, the real engine.

``make_harness`` seeds two projects (``acme`` and ``globex``) with keys of every kind on a
config topic of its own, opens a fresh warehouse database with the migrations applied, and
starts the app (config follower, live feed) behind a ``TestClient``. Rows go straight into
the warehouse tables, as the sink would write them. This module holds no tests.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from fastapi import FastAPI

from sextant.core.config_plane import ConfigPublisher
from sextant.core.kafka import ensure_topics
from sextant.core.migrations import migrate
from sextant.core.settings import KafkaSection
from sextant.core.warehouse import Warehouse, connect
from sextant.gateway.app import create_app
from sextant.gateway.settings import GatewaySettings
from sextant.schemas.config import (
    ALL_PROJECTS,
    ApiKey,
    ConfigDocument,
    KeyKind,
    Project,
    hash_key,
)
from tests.infra import wait_for

SECRETS = {
    ("acme", KeyKind.READ): "sx_read_acme_000000000000000000",
    ("acme", KeyKind.WRITE): "sx_write_acme_00000000000000000",
    ("globex", KeyKind.READ): "sx_read_globex_0000000000000000",
    (ALL_PROJECTS, KeyKind.ADMIN): "sx_admin_00000000000000000000000",
}


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@dataclass
class Harness:
    client: httpx.Client
    base_url: str
    app: FastAPI
    settings: GatewaySettings
    warehouse: Warehouse
    publisher: ConfigPublisher

    @property
    def read(self) -> dict[str, str]:
        return auth(SECRETS[("acme", KeyKind.READ)])

    @property
    def foreign(self) -> dict[str, str]:
        """A read key of the other project."""
        return auth(SECRETS[("globex", KeyKind.READ)])

    @property
    def write(self) -> dict[str, str]:
        return auth(SECRETS[("acme", KeyKind.WRITE)])

    @property
    def admin(self) -> dict[str, str]:
        return auth(SECRETS[(ALL_PROJECTS, KeyKind.ADMIN)])

    def put_config(self, *documents: ConfigDocument) -> None:
        """Publish documents and wait until the gateway has them."""
        self.publisher.put(documents)
        state = self.app.state.gateway.state
        wait_for(
            lambda: all(state.get(d.config_key()) == d for d in documents),
            10,
            message="config documents visible",
        )

    def insert_events(self, rows: Sequence[dict[str, Any]]) -> None:
        """Rows of the events table; ``timestamp`` a datetime, ids default from distinct_id."""
        lines = []
        for row in rows:
            full = {
                "project_id": "acme",
                "type": "track",
                "message_id": str(uuid.uuid4()),
                "properties": {},
            } | row
            full.setdefault("user_id", full["distinct_id"])
            full["timestamp"] = _iso(full["timestamp"])
            full.setdefault("received_at", full["timestamp"])
            lines.append(orjson.dumps(full))
        columns = sorted(
            {key for row in rows for key in row}
            | {
                "project_id",
                "type",
                "message_id",
                "properties",
                "user_id",
                "timestamp",
                "received_at",
            }
        )
        self.warehouse.insert_json("events", b"\n".join(lines), columns)

    def insert_points(self, rows: Sequence[dict[str, Any]]) -> None:
        """Rows of metric_points (the processor's windows)."""
        columns = [
            "project_id",
            "metric",
            "window_start",
            "window_seconds",
            "breakdown",
            "count",
            "sum",
            "sum_sq",
            "denominator",
            "hll",
            "digest",
            "version",
            "emitted_at",
        ]
        defaults: dict[str, Any] = {
            "project_id": "acme",
            "window_seconds": 60,
            "breakdown": "",
            "count": 0,
            "sum": 0.0,
            "sum_sq": 0.0,
            "denominator": 0,
            "hll": [],
            "digest": [],
            "version": 1,
            "emitted_at": datetime.now(UTC),
        }
        self.warehouse.insert(
            "metric_points", [[(defaults | row)[c] for c in columns] for row in rows], columns
        )

    def insert_exposures(self, rows: Sequence[dict[str, Any]]) -> None:
        columns = [
            "project_id",
            "experiment",
            "unit_id",
            "variation_id",
            "timestamp",
            "message_id",
            "multi_variant",
        ]
        defaults: dict[str, Any] = {"project_id": "acme", "multi_variant": False}
        self.warehouse.insert(
            "exposures",
            [
                [(defaults | {"message_id": str(uuid.uuid4())} | row)[c] for c in columns]
                for row in rows
            ],
            columns,
        )

    def insert_alerts(self, rows: Sequence[dict[str, Any]]) -> None:
        columns = [
            "project_id",
            "rule_id",
            "transition_id",
            "episode_id",
            "from_state",
            "to_state",
            "at",
            "value",
            "threshold",
            "severity",
            "message",
        ]
        defaults: dict[str, Any] = {
            "project_id": "acme",
            "episode_id": "e1",
            "value": None,
            "threshold": None,
            "severity": "warning",
            "message": "",
        }
        self.warehouse.insert(
            "alert_events",
            [
                [(defaults | {"transition_id": str(uuid.uuid4())} | row)[c] for c in columns]
                for row in rows
            ],
            columns,
        )


def _iso(value: datetime | str) -> str:
    return value.isoformat() if isinstance(value, datetime) else value


def seed_documents() -> list[ConfigDocument]:
    documents: list[ConfigDocument] = [
        Project(id="acme", project_id="acme", name="Acme"),
        Project(id="globex", project_id="globex", name="Globex"),
    ]
    for (project, kind), secret in SECRETS.items():
        documents.append(
            ApiKey(
                id=f"{project if project != ALL_PROJECTS else 'ops'}-{kind.value}",
                project_id=project,
                key_kind=kind,
                key_hash=hash_key(secret),
            )
        )
    return documents


@contextlib.contextmanager
def make_harness(
    kafka_bootstrap: str,
    warehouse_root: Path,
    migrate_with: Callable[[Warehouse], object] = migrate,
    **overrides: Any,
) -> Iterator[Harness]:
    """A gateway over its own topics and its own warehouse database, its tables made by
    ``migrate_with`` (the migrations by default)."""
    kafka = KafkaSection(kafka_bootstrap=kafka_bootstrap, topic_prefix=f"g{uuid.uuid4().hex[:10]}")
    ensure_topics(kafka, partitions=3)
    url = f"chdb://{warehouse_root}?database=g{uuid.uuid4().hex[:12]}"
    warehouse = connect(url)
    migrate_with(warehouse)
    settings = GatewaySettings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=kafka.topic_prefix,
        clickhouse_url=url,
        config_wait_seconds=20,
        **overrides,
    )
    publisher = ConfigPublisher(settings)
    publisher.put(seed_documents())
    app = create_app(settings)
    try:
        with (
            serve_in_thread(app) as base_url,
            httpx.Client(base_url=base_url, timeout=30) as client,
        ):
            harness = Harness(client, base_url, app, settings, warehouse, publisher)
            state = app.state.gateway.state
            wait_for(lambda: state.project("globex") is not None, 20, message="seed config")
            yield harness
    finally:
        publisher.close()


@contextlib.contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yields its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="gateway-under-test", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), 60, message="gateway started")
        if not server.started:
            raise RuntimeError("the gateway did not start")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)

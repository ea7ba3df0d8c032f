"""Operations round trips: the config plane exported to YAML and restored into an empty
deployment (secrets sealed throughout), and the warehouse backed up with ClickHouse's BACKUP
and restored with RESTORE."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sextant.cli.main import app as cli
from sextant.core.config_file import documents_from_file, load_config_file
from sextant.core.config_plane import ConfigFollower, ConfigPublisher, ConfigState
from sextant.core.kafka import ensure_topics
from sextant.core.migrations import applied, migrate
from sextant.core.secrets import SEALED_PREFIX, SecretBox, generate_secret_key, seal_documents
from sextant.core.settings import KafkaSection
from sextant.core.warehouse import ClickHouseError, Warehouse, connect
from sextant.core.warehouse_backup import backup, restore

REPO = Path(__file__).resolve().parents[2]
WEBHOOK_SECRET = "whsec_operations_test_0001"
CONFIG = f"""
admin_keys: [{{id: ops, secret: sx_admin_operations_00000000}}]
projects:
  - id: shop
    name: Shop
    keys: [{{id: web, kind: write, secret: sx_write_operations_0000000}}]
    metrics: [{{id: orders, metric_kind: count, event: Order Completed}}]
    alert_rules:
      - {{id: low, rule_kind: threshold, metric: orders, direction: below, threshold: 1,
          targets: [{{url: "https://hooks.example.com/x", secret: {WEBHOOK_SECRET}}}]}}
    features: [{{id: one-page, default_value: false, environments: {{production: {{rules: []}}}}}}]
"""


def _state(kafka: KafkaSection) -> ConfigState:
    follower = ConfigFollower(kafka).start()
    try:
        assert follower.wait_caught_up(20)
        return follower.state
    finally:
        follower.stop()


def _env(kafka: KafkaSection, key: str) -> dict[str, str]:
    return {
        "SEXTANT_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap,
        "SEXTANT_TOPIC_PREFIX": kafka.topic_prefix,
        "SEXTANT_CONFIG_WAIT_SECONDS": "20",
        "SEXTANT_SECRET_KEY": key,
    }


def test_config_export_restores_into_an_empty_deployment(
    kafka_settings: KafkaSection, tmp_path: Path
) -> None:
    key = generate_secret_key()
    source = tmp_path / "config.yaml"
    source.write_text(CONFIG)
    documents = seal_documents(documents_from_file(load_config_file(source)), SecretBox([key]))
    publisher = ConfigPublisher(kafka_settings)
    publisher.put(documents)
    publisher.close()

    runner = CliRunner()
    export = tmp_path / "export.yaml"
    done = runner.invoke(
        cli, ["config", "export", "--output", str(export)], env=_env(kafka_settings, key)
    )
    assert done.exit_code == 0, done.output
    text = export.read_text()
    assert WEBHOOK_SECRET not in text
    assert "sx_write_operations" not in text
    assert SEALED_PREFIX in text
    assert "key_hash" in text

    empty = KafkaSection(
        kafka_bootstrap=kafka_settings.kafka_bootstrap, topic_prefix=f"r{uuid.uuid4().hex[:10]}"
    )
    ensure_topics(empty, partitions=1)
    wrong_key = runner.invoke(
        cli, ["config", "restore", str(export)], env=_env(empty, generate_secret_key())
    )
    assert wrong_key.exit_code == 2, wrong_key.output
    assert "alert_rule" in wrong_key.output or "targets" in wrong_key.output
    assert _state(empty).documents() == []

    done = runner.invoke(cli, ["config", "restore", str(export)], env=_env(empty, key))
    assert done.exit_code == 0, done.output
    restored = {d.config_key(): d for d in _state(empty).documents()}
    original = {d.config_key(): d for d in _state(kafka_settings).documents()}
    assert restored == original
    assert len(restored) == len(documents)

    again = runner.invoke(cli, ["config", "restore", str(export)], env=_env(empty, key))
    assert again.exit_code == 1
    assert "holds" in again.output


def _insert_events(warehouse: Warehouse, count: int) -> None:
    now = datetime.now(UTC).isoformat()
    rows = b"\n".join(
        (
            f'{{"project_id": "shop", "event": "Order Completed", "timestamp": "{now}", '
            f'"distinct_id": "u{i % 7}", "message_id": "m{i}", "type": "track", '
            f'"properties": {{"revenue": {i}}}, "received_at": "{now}"}}'
        ).encode()
        for i in range(count)
    )
    columns = [
        "project_id",
        "event",
        "timestamp",
        "distinct_id",
        "message_id",
        "type",
        "properties",
        "received_at",
    ]
    warehouse.insert_json("events", rows, columns)


def _summary(warehouse: Warehouse, database: str) -> list[tuple[object, ...]]:
    return warehouse.query_rows(
        f"SELECT count(), sum(properties.revenue::Int64), uniqExact(distinct_id) "
        f"FROM `{database}`.events_unique"
    )


def test_warehouse_backup_restores_tables_data_and_ledger(warehouse: Warehouse) -> None:
    _insert_events(warehouse, 500)
    database = str(warehouse.command("SELECT currentDatabase()"))
    name = f"b-{uuid.uuid4().hex[:8]}"
    made = backup(warehouse, name)
    assert made.status == "BACKUP_CREATED"
    assert made.destination.startswith("File(")
    assert "/backups/" in made.destination

    copy = f"{database}_restored"
    done = restore(warehouse, name, into=copy)
    assert done.status == "RESTORED"
    assert _summary(warehouse, copy) == _summary(warehouse, database) == [(500, 124750, 7)]
    restored = connect(warehouse.url.replace(f"database={database}", f"database={copy}"))
    assert applied(restored) == applied(warehouse)
    assert migrate(restored) == []  # nothing left to apply
    # A table holding data is never overwritten.
    with pytest.raises(ClickHouseError, match="already contains some data"):
        restore(warehouse, name, into=copy)

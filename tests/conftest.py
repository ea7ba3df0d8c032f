"""Fixtures shared by every test layer. Integration and e2e tests declare what they use."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sextant.core.kafka import ensure_topics
from sextant.core.settings import KafkaSection
from sextant.core.warehouse import Warehouse, connect
from tests.infra import LocalBroker, session_broker


@pytest.fixture(scope="session")
def kafka_broker(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, LocalBroker | None]]:
    """(bootstrap, the local broker if this session started one) for the whole session."""
    with session_broker(tmp_path_factory.mktemp("infra")) as broker:
        yield broker


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: tuple[str, LocalBroker | None]) -> str:
    return kafka_broker[0]


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> KafkaSection:
    """Kafka settings with a topic prefix of this test's own, and its topics created."""
    settings = KafkaSection(
        kafka_bootstrap=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}"
    )
    ensure_topics(settings, partitions=3)
    return settings


@pytest.fixture(scope="session")
def warehouse_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded engine's data path for this test process (one path per process)."""
    return tmp_path_factory.mktemp("warehouse")


@pytest.fixture
def warehouse_url(warehouse_root: Path) -> str:
    """A fresh, empty database in the embedded engine, for this test alone."""
    return f"chdb://{warehouse_root}?database=t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def warehouse(warehouse_url: str) -> Warehouse:
    from sextant.core.migrations import migrate

    handle = connect(warehouse_url)
    migrate(handle)
    return handle


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under tests/integration and tests/e2e carry their layer's marker."""
    for item in items:
        path = str(item.path)
        if "/tests/integration/" in path:
            item.add_marker(pytest.mark.integration)
        elif "/tests/e2e/" in path:
            item.add_marker(pytest.mark.e2e)
        elif "/tests/browser/" in path:
            item.add_marker(pytest.mark.browser)

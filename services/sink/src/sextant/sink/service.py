"""The sink as a background service: ``sextant sink`` runs it beside its HTTP face, and with an
embedded warehouse (``chdb://``) the gateway process runs it (one process owns the engine).

The service owns one thread. It opens the warehouse (retrying until it answers), applies
pending migrations when ``sink_migrate`` is set, makes sure the dead-letter topic exists, and
runs :class:`~sextant.sink.loop.SinkLoop` until stopped, its inserts on a second thread (the
engine releases the GIL while it inserts, so the next batch is decoded meanwhile). Should
anything unexpected break the loop, it closes the consumer (nothing uncommitted is lost: it is
read again), backs off, and starts over.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from sextant.core.background import BackgroundLoop
from sextant.core.batch_consumer import BatchConsumer, Partition
from sextant.core.kafka import KafkaError, ensure_topics
from sextant.core.logging import get_logger
from sextant.core.migrations import migrate
from sextant.core.progress import ConsumerProgress
from sextant.core.warehouse import Warehouse, connect
from sextant.schemas.topics import Topic, topic_name
from sextant.sink.batch import BatchLimits
from sextant.sink.dead_letters import KafkaDeadLetters
from sextant.sink.loop import Backoff, Health, SinkLoop
from sextant.sink.settings import SinkSettings
from sextant.sink.tables import TABLES, TableSpec
from sextant.sink.writer import Store

T = TypeVar("T")

log = get_logger(__name__)


class WarehouseHandle(Store, Protocol):
    """What the sink needs of :class:`~sextant.core.warehouse.Warehouse`."""

    def ping(self) -> bool: ...


def _open_and_migrate(settings: SinkSettings) -> Warehouse:
    warehouse = connect(settings.clickhouse_url)
    if settings.sink_migrate:
        applied = migrate(warehouse, cluster=settings.clickhouse_cluster)
        if applied:
            log.info("migrations applied", migrations=applied)
    return warehouse


class SinkService(BackgroundLoop):
    """Kafka → ClickHouse, a :class:`~sextant.core.background.BackgroundLoop`; its progress per
    partition (committed offsets) is reported under ``sink``."""

    name = "sink"

    def __init__(
        self,
        settings: SinkSettings,
        *,
        open_warehouse: Callable[[SinkSettings], WarehouseHandle] = _open_and_migrate,
        progress: ConsumerProgress | None = None,
    ) -> None:
        super().__init__(
            progress=progress,
            retry_initial_s=settings.sink_retry_initial_seconds,
            retry_max_s=settings.sink_retry_max_seconds,
        )
        self.settings = settings
        self.health = Health()
        self._open_warehouse = open_warehouse
        self._backoff = Backoff(
            settings.sink_retry_initial_seconds, settings.sink_retry_max_seconds
        )
        self.specs: dict[str, TableSpec] = {
            topic_name(topic, settings.topic_prefix): spec for topic, spec in TABLES.items()
        }

    # -- BackgroundService -------------------------------------------------------------------

    def stop(self, timeout_s: float = 30.0) -> None:
        """Write and commit the current batch if the warehouse takes it, then leave."""
        super().stop(timeout_s)

    def ready(self) -> bool:
        return all(check() for check in self.checks().values())

    # -- what /readyz and /status show ------------------------------------------------------

    def checks(self) -> dict[str, Callable[[], bool]]:
        """Readiness by dependency: each is a cheap read of the loop's last observations."""
        return {
            "consumer": lambda: self.alive,
            "kafka": lambda: self.health.kafka_ok,
            "warehouse": lambda: self.health.warehouse_ok,
        }

    def status(self) -> dict[str, Any]:
        health = self.health
        return {
            "group_id": self.settings.group_id,
            "topics": sorted(self.specs),
            "consuming": health.consuming,
            "partitions": health.partitions,
            "warehouse_ok": health.warehouse_ok,
            "kafka_ok": health.kafka_ok,
            "last_error": health.last_error,
            "batches_committed": health.batches_committed,
            "records_committed": health.records_committed,
        }

    # -- the thread -------------------------------------------------------------------------

    def on_session_failed(self, error: Exception) -> None:
        log.error("sink loop failed; starting over", error=repr(error)[:300])
        if isinstance(error, KafkaError):
            self.health.kafka_ok = False
        self.health.last_error = f"loop: {error}"[:1_000]
        self.health.consuming = False

    def _retry(self, what: str, action: Callable[[], T]) -> T | None:
        """``action()`` until it succeeds (None if stopped first), backing off between tries."""
        delay: float | None = None
        while not self.stopping.is_set():
            try:
                return action()
            except Exception as error:  # noqa: BLE001 - retried: the dependency may come back
                if what == "warehouse":
                    self.health.warehouse_ok = False
                else:
                    self.health.kafka_ok = False
                self.health.last_error = f"{what}: {error}"[:1_000]
                log.warning("sink cannot start yet", step=what, error=str(error)[:300])
            delay = self._backoff.next(delay)
            self.stopping.wait(delay)
        return None

    def session(self) -> None:
        warehouse = self._retry("warehouse", lambda: self._open_warehouse(self.settings))
        if warehouse is None:
            return
        self.health.warehouse_ok = True
        created = self._retry(
            "dead-letter topic", lambda: ensure_topics(self.settings, [Topic.SINK_DEAD_LETTER])
        )
        if created is None:
            return
        loop: SinkLoop | None = None

        def on_revoked(partitions: list[Partition]) -> None:
            if loop is not None:
                loop.revoked(partitions)

        with contextlib.ExitStack() as clients:
            source = BatchConsumer(
                self.settings,
                self.settings.group_id,
                sorted(self.specs),
                on_revoked=on_revoked,
                instance_id=self.settings.sink_instance_id,
                session_timeout_ms=self.settings.sink_session_timeout_ms,
                fetch_min_bytes=self.settings.sink_fetch_min_bytes,
                fetch_max_wait_ms=self.settings.sink_fetch_max_wait_ms,
            )
            clients.callback(_close_quietly, source.close)
            dead_letters = KafkaDeadLetters(self.settings)
            clients.callback(_close_quietly, dead_letters.close)
            clients.callback(setattr, self.health, "consuming", False)
            writer = clients.enter_context(
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="sextant-sink-writer")
            )
            loop = SinkLoop(
                source,
                warehouse,
                dead_letters,
                self.specs,
                BatchLimits(
                    self.settings.sink_batch_rows,
                    self.settings.sink_batch_bytes,
                    self.settings.sink_batch_seconds,
                    self.settings.sink_live_batch_seconds,
                ),
                self._backoff,
                writer=writer,
                health=self.health,
                health_interval=self.settings.sink_health_interval_seconds,
                ping=warehouse.ping,
                progress=self.progress,
            )
            log.info("sink consuming", group=self.settings.group_id, topics=sorted(self.specs))
            self.connected()
            while not self.stopping.is_set():
                loop.step()
            loop.flush()  # one attempt: what is not committed now is read again later


def _close_quietly(close: Callable[[], None]) -> None:
    try:
        close()
    except (KafkaError, OSError) as error:
        log.warning("closing a Kafka client failed", error=str(error))

"""The processor assembled: config follower, catalog, the two stages over the faust log, the
metric alert evaluator and the operational routes."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI

from sextant.core.config_plane import ConfigFollower
from sextant.core.demo import guard_demo_keys
from sextant.core.kafka import (
    cluster_reachable,
    end_offsets,
    ensure_topic,
    ensure_topic_config,
    ensure_topics,
)
from sextant.core.logging import get_logger
from sextant.core.progress import ProgressBoard, StallGuard
from sextant.core.service import add_operational_routes, settle_heap
from sextant.processor.alerting import MetricAlertService
from sextant.processor.catalog import ConfigCatalog
from sextant.processor.faust_log import FaustProcessor
from sextant.processor.forgetting import Forgetting
from sextant.processor.metrics import ProcessorMetrics
from sextant.processor.partition import DedupPolicy
from sextant.processor.resolver import ResolverStage
from sextant.processor.runner import StageRunner
from sextant.processor.settings import ProcessorSettings
from sextant.processor.stages import StageOne, StageTwo
from sextant.schemas.identity import FIRST_STAGE, RESOLVER_STAGE
from sextant.schemas.topics import TOPICS as REGISTRY
from sextant.schemas.topics import Topic, topic_name

log = get_logger(__name__)
STUCK_EXIT_CODE = 75
TOPICS = (
    Topic.EVENTS_RAW,
    Topic.METRIC_POINTS,
    Topic.EXPOSURES,
    Topic.EXPERIMENT_STATISTICS,
    Topic.CONFIG,
    Topic.ALERTS,
    Topic.IDENTITIES,
    Topic.PERSON_OVERRIDES,
    Topic.IDENTITY_DECISIONS,
    Topic.PERSON_DELETIONS,
)
Clock = Callable[[], float]


class Since:
    """How long a condition has held, as polled."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._since: float | None = None

    def longer_than(self, seconds: float, holds: bool) -> bool:
        if not holds:
            self._since = None
            return False
        now = self._clock()
        self._since = now if self._since is None else self._since
        return now - self._since > seconds


class Watchdog:
    """Ends a worker whose rebalance (or table recovery) never ends, or whose stop never does.

    Seen under load: faust's recovery waiting for changelog records that never come, and its
    recovery service crashing on a rebalance; either way the worker holds partitions it never
    processes. The watchdog asks for a stop through the public shutdown path (the signal a
    supervisor sends), and the process exits with :data:`STUCK_EXIT_CODE` for its supervisor
    (the local supervisor, Kubernetes) to start it again; the next worker restores from the
    changelogs. A stop that does not finish within ``stop_limit`` is different: seen with Kafka
    gone, faust's shutdown waits for the broker for ever and no public path ends it, so the
    process exits at once (``abort``), a crash as far as the data goes, which loses nothing.
    """

    def __init__(
        self,
        rebalance_limit: float,
        stop_limit: float,
        *,
        request_stop: Callable[[], None],
        abort: Callable[[int], None],
        clock: Clock = time.monotonic,
    ) -> None:
        self.rebalance_limit = rebalance_limit
        self.stop_limit = stop_limit
        self.request_stop = request_stop
        self.abort = abort
        self.restart_requested = False
        self._rebalancing = Since(clock)
        self._stopping = Since(clock)

    def check(self, rebalancing: bool, stopping: bool) -> None:
        """One look at the worker."""
        if not self.restart_requested and self._rebalancing.longer_than(
            self.rebalance_limit, rebalancing and not stopping
        ):
            log.error("rebalance not finished; restarting", seconds=self.rebalance_limit)
            self.restart_requested = True
            self.request_stop()
        if self._stopping.longer_than(self.stop_limit, stopping):
            log.error("stop not finished; exiting now", seconds=self.stop_limit)
            self.abort(STUCK_EXIT_CODE if self.restart_requested else 1)

    def watch(self, rebalancing: Callable[[], bool], stopping: Callable[[], bool]) -> None:
        """Look every half second from a daemon thread."""

        def loop() -> None:
            while True:
                time.sleep(0.5)
                self.check(rebalancing(), stopping())

        threading.Thread(target=loop, name="watchdog", daemon=True).start()


def _stop_gracefully() -> None:
    """What a supervisor does to stop the worker: SIGTERM (faust's worker handles it)."""
    os.kill(os.getpid(), signal.SIGTERM)


def _exit_now(code: int) -> None:
    os._exit(code)


@dataclass
class Processor:
    settings: ProcessorSettings
    follower: ConfigFollower
    catalog: ConfigCatalog
    faust: FaustProcessor
    runner: StageRunner
    metrics: ProcessorMetrics
    http: FastAPI
    alerts: MetricAlertService
    watchdog: Watchdog
    stall_guard: StallGuard
    _server: uvicorn.Server | None = field(default=None, init=False)

    def start_http(self) -> None:
        """Serve /healthz, /readyz and /metrics from a daemon thread."""
        config = uvicorn.Config(
            self.http,
            host=self.settings.host,
            port=self.settings.processor_port,
            log_level=self.settings.log_level.lower(),
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        threading.Thread(target=self._server.run, name="http", daemon=True).start()

    def run(self) -> None:
        """Follow the config, then run the faust worker until SIGINT/SIGTERM."""
        self.follower.start()
        if not self.follower.wait_caught_up(self.settings.config_wait_seconds):
            log.warning("config not caught up yet; starting anyway")
        try:
            guard_demo_keys(self.follower.state, demo=self.settings.demo, part="processor")
        except Exception:
            self.follower.stop()
            raise
        self.start_http()
        self.alerts.start()
        self.stall_guard.start()
        settle_heap()

        def watch(worker: Any) -> None:
            self.watchdog.watch(lambda: self.faust.log.rebalancing, lambda: worker.should_stop)

        try:
            self.faust.run(watch)
        except SystemExit:
            if self.watchdog.restart_requested or self.stall_guard.restart_requested:
                raise SystemExit(STUCK_EXIT_CODE) from None
            raise
        finally:
            self.stall_guard.stop()
            self.alerts.stop()
            self.follower.stop()
            if self._server is not None:
                self._server.should_exit = True


def create_app(settings: ProcessorSettings) -> Processor:
    """Build the processor; topics it reads and writes are created if missing."""
    ensure_topics(settings, [t for t in TOPICS if t is not Topic.IDENTITIES])
    settings.processor_data_dir.mkdir(parents=True, exist_ok=True)
    partitions = len(end_offsets(settings, topic_name(Topic.EVENTS_RAW, settings.topic_prefix)))
    ensure_topic(settings, settings.partials_topic, partitions)
    # Created beside an events.raw of any size (an upgrade) with as many partitions.
    ensure_topic(
        settings,
        topic_name(Topic.IDENTITIES, settings.topic_prefix),
        partitions,
        REGISTRY[Topic.IDENTITIES],
    )
    board = ProgressBoard(settings.stall_seconds)
    follower = ConfigFollower(settings, progress=board.consumer("config"))
    catalog = ConfigCatalog(follower.state)
    metrics = ProcessorMetrics()
    identities = len(end_offsets(settings, topic_name(Topic.IDENTITIES, settings.topic_prefix)))
    if identities != partitions:
        # faust gives a worker the same partition numbers of every table: the resolver's
        # state partitions follow events.raw's.
        raise SystemExit(
            f"the identities topic has {identities} partitions and events.raw {partitions}: "
            "they must have as many"
        )
    faust_app = FaustProcessor(settings, partitions, identities)
    for changelog, changelog_partitions in faust_app.changelogs().items():
        # Before faust declares them: bounded replays on restart, for new and old topics.
        ensure_topic_config(settings, changelog, changelog_partitions, settings.changelog_config())
    deletions_topic = topic_name(Topic.PERSON_DELETIONS, settings.topic_prefix)
    stage_one = StageOne(
        topic=faust_app.events_topic_name,
        partials_topic=faust_app.partials_topic_name,
        exposures_topic=topic_name(Topic.EXPOSURES, settings.topic_prefix),
        partitions=partitions,
        interval=settings.processor_flush_interval_seconds,
        catalog=catalog,
        dedup=DedupPolicy(
            settings.processor_dedup_window_seconds, settings.processor_dedup_max_ids
        ),
        table=faust_app.windows,
        outputs=faust_app.outputs,
        metrics=metrics,
        statistics_topic=topic_name(Topic.EXPERIMENT_STATISTICS, settings.topic_prefix)
        if settings.processor_experiment_statistics
        else None,
        plans=catalog,
        forgetting=Forgetting(
            FIRST_STAGE, catalog.person_deletions, settings.processor_deletion_settle_seconds
        ),
        deletions_topic=deletions_topic,
    )
    stage_two = StageTwo(
        topic=faust_app.partials_topic_name,
        points_topic=topic_name(Topic.METRIC_POINTS, settings.topic_prefix),
        partitions=partitions,
        interval=settings.processor_merge_interval_seconds,
        idle_seconds=settings.processor_merge_idle_seconds,
        catalog=catalog,
        table=faust_app.merges,
        outputs=faust_app.outputs,
        metrics=metrics,
    )
    resolver = ResolverStage(
        topic=faust_app.identities_topic_name,
        overrides_topic=topic_name(Topic.PERSON_OVERRIDES, settings.topic_prefix),
        decisions_topic=topic_name(Topic.IDENTITY_DECISIONS, settings.topic_prefix),
        partitions=identities,
        interval=settings.processor_flush_interval_seconds,
        max_ids=settings.processor_person_max_ids,
        junk=catalog.junk_ids,
        table=faust_app.persons,
        outputs=faust_app.outputs,
        metrics=metrics,
        forgetting=Forgetting(
            RESOLVER_STAGE,
            catalog.person_deletions,
            settings.processor_deletion_settle_seconds,
        ),
        deletions_topic=deletions_topic,
    )
    stages = (stage_one, stage_two, resolver)
    runner = StageRunner(
        faust_app.log,
        stages,
        metrics,
        batch_max=settings.processor_batch_max,
        progress={stage.name: board.consumer(f"stage-{stage.name}") for stage in stages},
    )
    faust_app.drive(runner, stage_one, stage_two, resolver)
    alerts = MetricAlertService(
        settings,
        follower.state,
        lambda: follower.caught_up,
        progress=board.consumer("alert-evaluator"),
    )
    watchdog = Watchdog(
        settings.processor_max_rebalance_seconds,
        settings.processor_stop_seconds,
        request_stop=_stop_gracefully,
        abort=_exit_now,
    )
    http = FastAPI(title="Sextant processor", docs_url=None, redoc_url=None)
    add_operational_routes(
        http,
        {
            "config": lambda: follower.caught_up and follower.healthy,
            "kafka": lambda: cluster_reachable(settings.kafka_bootstrap),
            "agents": runner.ready,
            "alerts": alerts.ready,
        },
        registry=metrics.registry,
        progress=board,
    )
    guard = StallGuard(board, settings.stall_restart_seconds, request_stop=_stop_gracefully)
    return Processor(
        settings, follower, catalog, faust_app, runner, metrics, http, alerts, watchdog, guard
    )

"""The processor assembled: config follower, catalog, faust agents and the operational routes."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI
from mode import Service

from sextant.core.config_plane import ConfigFollower
from sextant.core.demo import guard_demo_keys
from sextant.core.kafka import cluster_reachable, end_offsets, ensure_topic, ensure_topics
from sextant.core.logging import get_logger
from sextant.core.service import add_operational_routes
from sextant.processor.agents import ProcessorAgents
from sextant.processor.alerting import MetricAlertService
from sextant.processor.catalog import ConfigCatalog
from sextant.processor.metrics import ProcessorMetrics
from sextant.processor.settings import ProcessorSettings
from sextant.schemas.topics import Topic, topic_name

log = get_logger(__name__)
STUCK_EXIT_CODE = 75
TOPICS = (Topic.EVENTS_RAW, Topic.METRIC_POINTS, Topic.EXPOSURES, Topic.CONFIG, Topic.ALERTS)


@dataclass
class Processor:
    settings: ProcessorSettings
    follower: ConfigFollower
    catalog: ConfigCatalog
    agents: ProcessorAgents
    metrics: ProcessorMetrics
    http: FastAPI
    alerts: MetricAlertService
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

    def start_watchdog(self, worker: Service) -> None:
        """Exit the process when a rebalance or table recovery never ends, or a stop.

        Seen under load: faust's recovery waiting for changelog records that never come, and
        its recovery service crashing on a rebalance; either way the worker holds partitions
        it never processes. Exiting hands them to the other workers, and the supervisor
        (local supervisor, Kubernetes) restarts this one, which restores from the changelog.
        Seen with Kafka gone: a stop waiting for the broker (and retrying its metadata on a
        full core) until killed.
        """
        rebalance_limit = self.settings.processor_max_rebalance_seconds
        stop_limit = self.settings.processor_stop_seconds

        def watch() -> None:
            rebalancing = Since()
            stopping = Since()
            while True:
                time.sleep(0.5)
                if rebalancing.longer_than(rebalance_limit, self.agents.app.rebalancing):
                    log.error("rebalance not finished; exiting", seconds=rebalance_limit)
                    os._exit(STUCK_EXIT_CODE)
                if stopping.longer_than(stop_limit, worker.should_stop):
                    log.error("stop not finished; exiting now", seconds=stop_limit)
                    os._exit(1)

        threading.Thread(target=watch, name="watchdog", daemon=True).start()

    def run(self) -> None:
        """Follow the config, then run the faust worker until SIGINT/SIGTERM."""
        import faust

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
        worker = faust.Worker(
            self.agents.app,
            loglevel=self.settings.log_level.lower(),
            quiet=True,
            redirect_stdouts=False,
            override_logging=False,
        )
        self.start_watchdog(worker)
        try:
            worker.execute_from_commandline()
        finally:
            self.alerts.stop()
            self.follower.stop()
            if self._server is not None:
                self._server.should_exit = True


class Since:
    """How long a condition has held, as polled."""

    def __init__(self) -> None:
        self._since: float | None = None

    def longer_than(self, seconds: float, holds: bool) -> bool:
        if not holds:
            self._since = None
            return False
        self._since = self._since or time.monotonic()
        return time.monotonic() - self._since > seconds


def create_app(settings: ProcessorSettings) -> Processor:
    """Build the processor; topics it reads and writes are created if missing."""
    ensure_topics(settings, TOPICS)
    settings.processor_data_dir.mkdir(parents=True, exist_ok=True)
    partitions = len(end_offsets(settings, topic_name(Topic.EVENTS_RAW, settings.topic_prefix)))
    ensure_topic(settings, settings.partials_topic, partitions)
    follower = ConfigFollower(settings)
    catalog = ConfigCatalog(follower.state)
    metrics = ProcessorMetrics()
    agents = ProcessorAgents(settings, catalog, metrics, partitions)
    alerts = MetricAlertService(settings, follower.state, lambda: follower.caught_up)
    http = FastAPI(title="Sextant processor", docs_url=None, redoc_url=None)
    add_operational_routes(
        http,
        {
            "config": lambda: follower.caught_up and follower.healthy,
            "kafka": lambda: cluster_reachable(settings.kafka_bootstrap),
            "agents": agents.ready,
            "alerts": alerts.ready,
        },
        registry=metrics.registry,
    )
    return Processor(settings, follower, catalog, agents, metrics, http, alerts)

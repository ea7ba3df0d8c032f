"""Several collector processes on one port, each with its own listening socket (SO_REUSEPORT).

uvicorn's own ``workers`` share one listening socket, and the kernel then hands most
connections to whichever process wakes first: with keep-alive clients one worker ended up
with every connection. With a socket per process and ``SO_REUSEPORT`` the kernel spreads
connections across the processes by their address hash.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

import uvicorn
from prometheus_client.multiprocess import mark_process_dead

from sextant.collector.app import create_app
from sextant.collector.settings import CollectorSettings
from sextant.collector.shared import metrics_dir, prepared_shared_dir
from sextant.core.demo import DemoKeysActive, check_demo_keys_once
from sextant.core.logging import configure_logging, get_logger

log = get_logger(__name__)


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run_worker() -> None:
    """One worker process: settings from the environment, its own socket on the shared port."""
    settings = CollectorSettings()
    configure_logging(settings.log_level, settings.log_json, part="collector")
    config = uvicorn.Config(
        create_app(settings),
        log_level=settings.log_level.lower(),
        access_log=False,
    )
    sock = listening_socket(settings.host, settings.collector_port)
    uvicorn.Server(config).run(sockets=[sock])


def supervise(settings: CollectorSettings) -> None:
    """Run ``collector_workers`` processes until SIGTERM/SIGINT; restart one that crashes.

    Active demo keys are checked here first, as each worker does at its start: a worker
    refusing them would otherwise be restarted again and again.
    """
    try:
        check_demo_keys_once(
            settings, demo=settings.demo, part="collector", wait_s=settings.config_wait_seconds
        )
    except DemoKeysActive:
        raise SystemExit(2) from None  # the reason is logged
    with prepared_shared_dir(settings) as shared:
        _run_workers(settings, metrics_dir(shared))


def _run_workers(settings: CollectorSettings, metrics: Path) -> None:
    context = multiprocessing.get_context("spawn")
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.is_alive():
                process.terminate()

    def start() -> BaseProcess:
        process = context.Process(target=run_worker, name="collector-worker")
        process.start()
        return process

    processes = [start() for _ in range(settings.collector_workers)]
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        for index, process in enumerate(processes):
            if not process.is_alive() and not stopping:
                log.error("a collector worker exited; starting another", code=process.exitcode)
                if process.pid is not None:  # its gauges stop counting; its counts remain
                    mark_process_dead(process.pid, str(metrics))  # type: ignore[no-untyped-call]
                processes[index] = start()
        time.sleep(0.5)
    for process in processes:
        process.join(timeout=30)

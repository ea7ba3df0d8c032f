"""A worker whose rebalance never ends exits for its supervisor to restart it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from sextant.processor.app import STUCK_EXIT_CODE

_WORKER = textwrap.dedent(
    """
    import sys, time
    from types import SimpleNamespace
    from sextant.processor.app import Processor
    from sextant.processor.settings import ProcessorSettings

    app = SimpleNamespace(rebalancing=sys.argv[1] == "stuck")
    worker = SimpleNamespace(
        settings=ProcessorSettings(processor_max_rebalance_seconds=1.0),
        agents=SimpleNamespace(app=app),
    )
    Processor.start_watchdog(worker)  # type: ignore[arg-type]
    time.sleep(4)
    """
)


def _run(mode: str) -> int:
    return subprocess.run([sys.executable, "-c", _WORKER, mode], timeout=60).returncode


def test_a_stuck_rebalance_ends_the_process_with_its_exit_code() -> None:
    assert _run("stuck") == STUCK_EXIT_CODE


def test_a_worker_that_is_not_rebalancing_keeps_running() -> None:
    assert _run("working") == 0

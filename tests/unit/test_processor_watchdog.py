"""A worker whose rebalance, or stop, never ends exits (to be restarted, or to end)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from sextant.processor.app import STUCK_EXIT_CODE

_PROCESS = textwrap.dedent(
    """
    import sys, time
    from types import SimpleNamespace
    from sextant.processor.app import Processor
    from sextant.processor.settings import ProcessorSettings

    app = SimpleNamespace(rebalancing=sys.argv[1] == "stuck")
    processor = SimpleNamespace(
        settings=ProcessorSettings(
            processor_max_rebalance_seconds=1.0, processor_stop_seconds=1.0
        ),
        agents=SimpleNamespace(app=app),
    )
    faust_worker = SimpleNamespace(should_stop=sys.argv[1] == "stopping")
    Processor.start_watchdog(processor, faust_worker)  # type: ignore[arg-type]
    time.sleep(4)
    """
)


def _run(mode: str) -> int:
    return subprocess.run([sys.executable, "-c", _PROCESS, mode], timeout=60).returncode


def test_a_stuck_rebalance_ends_the_process_with_its_exit_code() -> None:
    assert _run("stuck") == STUCK_EXIT_CODE


def test_a_stop_that_does_not_finish_ends_the_process() -> None:
    assert _run("stopping") == 1


def test_a_worker_that_is_neither_rebalancing_nor_stopping_keeps_running() -> None:
    assert _run("working") == 0

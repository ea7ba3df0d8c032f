"""Interpreter exit: events are flushed, and a collector that is down cannot hold exit hostage."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from tests.infra import REPO, free_port


def test_exit_waits_at_most_shutdown_timeout_when_the_collector_is_down() -> None:
    code = f"""
        from sextant.sdk import Client, RetryPolicy
        client = Client(
            "wk",
            host="http://127.0.0.1:{free_port()}",
            shutdown_timeout=1.0,
            retry=RetryPolicy(base_delay=0.2, max_delay=0.2, max_retry_time=600),
            on_error=lambda error: print("on_error:", error.reason, len(error.events)),
        )
        for i in range(30):
            client.track("u", "Clicked")
        """
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )

    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 15
    reported = [line.split() for line in result.stdout.splitlines()]
    assert {reason for _, reason, _ in reported} == {"shutdown"}
    assert sum(int(count) for *_, count in reported) == 30

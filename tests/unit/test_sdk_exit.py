"""Interpreter exit: events are flushed, and a collector that is down cannot hold exit hostage."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.infra import REPO, free_port


def test_exit_waits_at_most_shutdown_timeout_when_the_collector_is_down() -> None:
    # The bound is measured inside the child, from the last call to after the SDK's exit
    # handler (registered when the SDK is imported; handlers run last registered first), so
    # the interpreter's start-up does not count.
    code = f"""
        import atexit, time
        atexit.register(lambda: print("exit took", time.monotonic() - last_call))
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
        last_call = time.monotonic()
        """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    [took_line] = [line for line in lines if line.startswith("exit took ")]
    lines.remove(took_line)
    took = float(took_line.removeprefix("exit took "))
    assert took < 1.0 + 2.0, "shutdown_timeout is 1 s; 2 s of slack for a loaded machine"
    reported = [line.split() for line in lines]
    assert {reason for _, reason, _ in reported} == {"shutdown"}
    assert sum(int(count) for *_, count in reported) == 30

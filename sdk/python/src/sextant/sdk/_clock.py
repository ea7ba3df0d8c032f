"""Time, injected: wall time for event timestamps, a monotonic clock and sleeps for retries."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """What the client asks of time. Tests inject a fake whose ``sleep`` returns at once."""

    def now(self) -> datetime:
        """The current wall-clock time, timezone-aware (event ``timestamp`` and ``sentAt``)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (retry budgets)."""
        ...

    def sleep(self, seconds: float, interrupt: threading.Event) -> bool:
        """Wait ``seconds``, or less if ``interrupt`` is set; True when the full wait elapsed."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float, interrupt: threading.Event) -> bool:
        return not interrupt.wait(max(seconds, 0.0))

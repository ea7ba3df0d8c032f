"""One CPU-heavy step per event-loop iteration, so the loop's I/O chains are not starved.

A collector request spends a few milliseconds of pure CPU (parse, check, enrich 100 events)
between two awaits. When several requests become ready in the same loop iteration, asyncio
runs all of them back to back, and every callback scheduled meanwhile waits behind all of
them. A Kafka produce round trip is a chain of about ten such callbacks (socket read, response
parse, batch futures, the next batch, the next request), so under load every link of the
chain waited behind several requests and acknowledgements took tens of milliseconds although
the broker answered in a few.

:class:`Turns` lets at most one heavy step start per iteration; the others wait, in arrival
order, for later iterations. The work done is the same, and the loop never idles while a step
is waiting: only the order changes, so that I/O chains advance between heavy steps.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Turns:
    """Grants heavy steps one at a time, each in a later event-loop iteration than the last.

    Use: ``await turns.take()`` immediately before a stretch of CPU work with no await in it.
    Must be used from one event loop.
    """

    def __init__(self) -> None:
        self._taken_this_iteration = False
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """How many steps wait for a turn."""
        return len(self._waiting)

    async def take(self, *, first: bool = False) -> None:
        """Wait for a turn; ``first`` goes ahead of the steps already waiting."""
        if self._taken_this_iteration or self._waiting:
            turn = asyncio.get_running_loop().create_future()
            if first:
                self._waiting.appendleft(turn)
            else:
                self._waiting.append(turn)
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self._grant_next()  # the turn was given to a step that left: pass it on
                raise
            return  # granted: the grant already holds this iteration for it
        self._hold_iteration()

    def _hold_iteration(self) -> None:
        if not self._taken_this_iteration:
            self._taken_this_iteration = True
            asyncio.get_running_loop().call_soon(self._next_iteration)

    def _next_iteration(self) -> None:
        self._taken_this_iteration = False
        self._grant_next()

    def _grant_next(self) -> None:
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                # The step resumes in the next iteration; hold that one for it, so that a
                # request arriving there waits behind it instead of running beside it.
                turn.set_result(None)
                self._hold_iteration()
                return

"""Heavy steps take turns: callbacks scheduled meanwhile run between them, in a fair order."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from sextant.core.turns import Turns


def hop_chain(log: list[str], hops: int) -> None:
    """Schedule a chain of ``hops`` callbacks, each scheduling the next (like an I/O chain)."""
    loop = asyncio.get_running_loop()

    def hop(n: int) -> None:
        log.append(f"hop {n}")
        if n < hops:
            loop.call_soon(hop, n + 1)

    loop.call_soon(hop, 1)


async def heavy_step(
    turns: Turns | None, name: str, log: list[str], *, first: bool = False
) -> None:
    if turns is not None:
        await turns.take(first=first)
    log.append(name)


def heavy_positions(log: list[str]) -> list[int]:
    return [i for i, entry in enumerate(log) if entry.startswith("heavy")]


async def test_without_turns_heavy_steps_ready_together_run_back_to_back() -> None:
    log: list[str] = []
    hop_chain(log, 6)
    await asyncio.gather(*(heavy_step(None, f"heavy {i}", log) for i in range(4)))
    positions = heavy_positions(log)
    # The baseline the gate exists for: every hop after the first waits behind all four.
    assert positions == [positions[0] + i for i in range(4)]


async def test_a_callback_chain_advances_between_heavy_steps() -> None:
    turns = Turns()
    log: list[str] = []
    hop_chain(log, 6)
    await asyncio.gather(*(heavy_step(turns, f"heavy {i}", log) for i in range(4)))
    positions = heavy_positions(log)
    assert len(positions) == 4
    for before, after in itertools.pairwise(positions):
        assert any(entry.startswith("hop") for entry in log[before + 1 : after]), log


async def test_turns_are_granted_in_arrival_order() -> None:
    turns = Turns()
    log: list[str] = []
    await asyncio.gather(*(heavy_step(turns, f"heavy {i}", log) for i in range(5)))
    assert log == [f"heavy {i}" for i in range(5)]


async def test_a_step_that_goes_first_overtakes_the_waiting_ones() -> None:
    turns = Turns()
    log: list[str] = []
    steps = [asyncio.create_task(heavy_step(turns, f"heavy {i}", log)) for i in range(3)]
    steps.append(asyncio.create_task(heavy_step(turns, "heavy urgent", log, first=True)))
    await asyncio.sleep(0)  # heavy 0 holds this iteration; the others wait
    assert turns.waiting == 3
    await asyncio.gather(*steps)
    assert log == ["heavy 0", "heavy urgent", "heavy 1", "heavy 2"]
    assert turns.waiting == 0


async def test_a_single_step_takes_its_turn_at_once() -> None:
    turns = Turns()
    log: list[str] = []
    hop_chain(log, 2)
    await heavy_step(turns, "heavy", log)
    assert log == ["heavy"]  # no iteration passed: the hops have not run yet


async def test_a_waiter_that_leaves_does_not_hold_up_the_others() -> None:
    turns = Turns()
    log: list[str] = []
    first = asyncio.create_task(heavy_step(turns, "heavy first", log))
    leaving = asyncio.create_task(heavy_step(turns, "heavy leaving", log))
    last = asyncio.create_task(heavy_step(turns, "heavy last", log))
    await first
    leaving.cancel()
    await asyncio.wait_for(last, timeout=5)
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert log == ["heavy first", "heavy last"]

"""Where a profiled process spends its time, from py-spy's raw (collapsed stack) output.

``py-spy record -f raw`` writes one line per distinct stack: frames from the outermost to the
innermost, separated by ``;``, then the number of samples. Two views are printed: *self* time
by the package of the innermost frame, and *inclusive* time of chosen functions (the share of
samples with that function anywhere on the stack). Samples waiting in ``select`` or on a
thread lock are idle (py-spy's non-blocking mode cannot always tell) and are left out.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_SEXTANT_PARTS = {"processor", "core", "schemas", "collector", "sink", "gateway", "notifier"}


def _parse(frame: str) -> tuple[str, str]:
    """``Class.method (package/module.py:line)`` → (``Class.method``, ``package/module.py``)."""
    match = _FRAME.match(frame)
    return (match.group("function"), match.group("file")) if match else (frame, "")


_IDLE = ("select (selectors.py", "Condition.wait (threading.py", "Event.wait (threading.py")


def read_stacks(path: Path) -> tuple[Counter[tuple[str, ...]], int]:
    """The busy stacks and their sample counts, and the number of idle samples left out."""
    stacks: Counter[tuple[str, ...]] = Counter()
    idle = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = tuple(stack.split(";"))
        if any(marker in frames[-1] for marker in _IDLE):
            idle += int(count)
        else:
            stacks[frames] += int(count)
    return stacks, idle


def package_of(frame: str) -> str:
    """The top-level package of a frame's file as py-spy prints it (``faust/streams.py``)."""
    top = _parse(frame)[1].split("/", 1)[0]
    if top in _SEXTANT_PARTS or top == "sextant":
        return "sextant"
    if not top or top.startswith("<") or top.endswith(".py"):
        return "python (no package)"
    return top


def self_time_by_package(stacks: Counter[tuple[str, ...]]) -> list[tuple[str, float]]:
    total = sum(stacks.values()) or 1
    shares: Counter[str] = Counter()
    for stack, count in stacks.items():
        shares[package_of(stack[-1])] += count
    return [(name, n / total) for name, n in shares.most_common()]


def _named(frame: str, function: str) -> bool:
    name = _parse(frame)[0]
    return name == function or name.endswith(f".{function}")


def inclusive_time(
    stacks: Counter[tuple[str, ...]], functions: Iterable[str]
) -> list[tuple[str, float]]:
    total = sum(stacks.values()) or 1
    found = []
    for function in functions:
        hits = sum(n for stack, n in stacks.items() if any(_named(f, function) for f in stack))
        found.append((function, hits / total))
    return found


def report(path: Path, functions: Iterable[str]) -> str:
    stacks, idle = read_stacks(path)
    busy = sum(stacks.values())
    lines = [
        f"{busy:,} busy samples from {path.name} ({idle:,} idle left out)",
        "self time by package (share of busy samples):",
    ]
    lines += [f"  {share:6.1%}  {name}" for name, share in self_time_by_package(stacks)]
    lines.append("inclusive time:")
    lines += [f"  {share:6.1%}  {name}" for name, share in inclusive_time(stacks, functions)]
    return "\n".join(lines)

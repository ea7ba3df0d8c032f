"""Where a profiled process spends its time, from py-spy's raw (collapsed stack) output.

``py-spy record -f raw`` writes one line per distinct stack: frames from the outermost to the
innermost, separated by ``;``, then the number of samples. Two views are printed: *self* time
by the package of the innermost frame, and *inclusive* time of chosen functions (the share of
samples with that function anywhere on the stack).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")
_PACKAGES = (
    "sextant",
    "faust",
    "mode",
    "aiokafka",
    "kafka",
    "orjson",
    "pydantic",
    "uvicorn",
    "asyncio",
    "threading",
    "concurrent",
    "selectors",
)


def read_stacks(path: Path) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def package_of(frame: str) -> str:
    match = _FRAME.match(frame)
    path = match.group("file") if match else frame
    parts = re.split(r"[/\\]", path)
    for name in reversed(parts[:-1]):
        if name in _PACKAGES:
            return name
    return "other" if "site-packages" in path else "python"


def self_time_by_package(stacks: Counter[tuple[str, ...]]) -> list[tuple[str, float]]:
    total = sum(stacks.values()) or 1
    shares: Counter[str] = Counter()
    for stack, count in stacks.items():
        shares[package_of(stack[-1])] += count
    return [(name, n / total) for name, n in shares.most_common()]


def inclusive_time(
    stacks: Counter[tuple[str, ...]], functions: Iterable[str]
) -> list[tuple[str, float]]:
    total = sum(stacks.values()) or 1
    found = []
    for function in functions:
        hits = sum(
            n for stack, n in stacks.items() if any(f.startswith(f"{function} (") for f in stack)
        )
        found.append((function, hits / total))
    return found


def report(path: Path, functions: Iterable[str]) -> str:
    stacks = read_stacks(path)
    lines = [f"{sum(stacks.values()):,} samples from {path.name}", "self time by package:"]
    lines += [f"  {share:6.1%}  {name}" for name, share in self_time_by_package(stacks)]
    lines.append("inclusive time:")
    lines += [f"  {share:6.1%}  {name}" for name, share in inclusive_time(stacks, functions)]
    return "\n".join(lines)

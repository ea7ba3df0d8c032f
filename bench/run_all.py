"""``make bench``: run every benchmark, then write ``bench/RESULTS.md`` from their results.

``python -m bench.run_all`` runs them all; ``python -m bench.run_all --only sink_throughput``
runs some; ``--report`` only rewrites RESULTS.md from the stored results.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, machine

BENCH_DIR = Path(__file__).parent
RESULTS_MD = BENCH_DIR / "RESULTS.md"
NOT_BENCHMARKS = {"__init__", "common", "run_all"}


def benchmark_modules() -> list[str]:
    return sorted(
        path.stem
        for path in BENCH_DIR.glob("*.py")
        if path.stem not in NOT_BENCHMARKS and "def main(" in path.read_text()
    )


def run(module: str) -> bool:
    """Each benchmark in a process of its own, so one's engine or threads never skew another's."""
    print(f"== bench.{module}", flush=True)
    done = subprocess.run([sys.executable, "-m", f"bench.{module}"], check=False)
    return done.returncode == 0


def _format(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _rows(name: str, payload: dict[str, Any]) -> list[str]:
    rows = []
    for figure in payload["figures"]:
        rows.append(
            f"| {figure['benchmark']} | {figure['figure']} | {_format(figure['value'])} "
            f"{figure['unit']} | {figure['baseline'] or '—'} | "
            f"{_format(figure['baseline_value'])} | {_format(figure['ratio'])} | "
            f"{figure['target'] or '—'} | {payload['measured_at']} | `{figure['command']}` |"
        )
    return rows


def write_report() -> Path:
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python -m bench.run_all`). Every figure is measured beside a",
        "baseline in the same run, and the ratio is what to compare between machines.",
        "",
        f"Machine: {machine()}.",
        "",
        "| benchmark | figure | value | baseline | baseline value | ratio | target "
        "| measured | command |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(RESULTS_DIR.glob("*.json")):
        lines += _rows(path.stem, json.loads(path.read_text()))
    notes = BENCH_DIR / "NOTES.md"
    if notes.exists():
        lines += ["", notes.read_text().rstrip()]
    RESULTS_MD.write_text("\n".join(lines) + "\n")
    return RESULTS_MD


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", default=None, help="benchmark module names")
    parser.add_argument("--report", action="store_true", help="only rewrite RESULTS.md")
    args = parser.parse_args()
    failed = []
    if not args.report:
        for module in args.only or benchmark_modules():
            importlib.import_module(f"bench.{module}")  # fail fast on a typo
            if not run(module):
                failed.append(module)
    print(f"wrote {write_report()}")
    if failed:
        raise SystemExit(f"benchmarks failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()

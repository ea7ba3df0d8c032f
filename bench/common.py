"""What every benchmark reports: a figure beside a baseline measured in the same run.

The machines are shared and noisy, so absolute numbers mean little; each benchmark runs its
baseline (Kafka's own perf tool, a plain clickhouse-connect insert, ...) in the same process
or minute and reports the ratio. Results are written to ``bench/results/<name>.json`` and
collected into ``bench/RESULTS.md`` by ``make bench``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from sextant.core.config_plane import ConfigPublisher
from sextant.core.settings import KafkaSection
from sextant.schemas.config import ApiKey, KeyKind, Project, hash_key

RESULTS_DIR = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Figure:
    benchmark: str
    figure: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    target: str = ""
    command: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.baseline_value:
            return None
        return self.value / self.baseline_value


def machine() -> str:
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"{os.cpu_count()} cores, {memory_gib:.0f} GiB, {python}"


def write_results(name: str, figures: list[Figure]) -> Path:
    """Store one benchmark's figures for ``make bench`` to collect."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "figures": [asdict(f) | {"ratio": f.ratio} for f in figures],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def report(name: str, figures: list[Figure]) -> None:
    """Print ``figures`` with their ratios and store them for ``make bench``."""
    for figure in figures:
        ratio = f" (ratio {figure.ratio:.2f})" if figure.ratio else ""
        print(f"{figure.figure}: {figure.value:,} {figure.unit}{ratio}")
    print(write_results(name, figures))


@contextlib.contextmanager
def bootstrap_server(given: str | None) -> Iterator[str]:
    """``given`` if set, else a private broker of the project's own for this benchmark."""
    if given:
        yield given
        return
    from tests.infra import LocalBroker

    with tempfile.TemporaryDirectory() as tmp:
        broker = LocalBroker(Path(tmp) / "kafka")
        broker.start()
        try:
            yield broker.bootstrap
        finally:
            broker.stop()


def publish_bench_project(settings: KafkaSection, write_key: str) -> None:
    """The ``bench`` project with ``write_key`` and no practical rate limit, on the config topic."""
    publisher = ConfigPublisher(settings)
    try:
        publisher.put(
            [
                Project(id="bench", project_id="bench", name="Bench", rate_limit_per_second=10**9),
                ApiKey(
                    id="wk",
                    project_id="bench",
                    key_kind=KeyKind.WRITE,
                    key_hash=hash_key(write_key),
                ),
            ]
        )
    finally:
        publisher.close()

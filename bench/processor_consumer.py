"""Processor worker catch-up: Sextant's batch-draining consumer against faust's drain loop.

faust's loop hands each fetched record to the streams with its own ``Service.wait_first``
(four tasks per record); ``sextant.processor.transport.BatchDrainingConsumer`` waits once per
fetched batch. On one broker and the same pre-produced events, workers of both kinds
(``bench.faust_drain_worker`` is the baseline) catch up in alternating rounds, each in a
consumer group of its own, with six metric definitions and with none; the figure is the
median round.

Run: ``python -m bench.processor_consumer [--events N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import uuid
from pathlib import Path

from bench.common import Figure, write_results
from bench.common import bootstrap_server as broker
from bench.processor_throughput import Worker, catch_up, definitions, produce
from sextant.core.config_plane import ConfigPublisher
from sextant.core.kafka import ensure_topics
from sextant.core.settings import KafkaSection
from sextant.schemas.config import Project

NAME = "processor_consumer"
COMMAND = "python -m bench.processor_consumer"
KINDS = {"batch-draining": "sextant.processor", "faust's loop": "bench.faust_drain_worker"}


def rates(settings: KafkaSection, events: int, rounds: int, root: Path) -> dict[str, list[float]]:
    """Catch-up rate of each kind of worker, rounds alternating, a new group each time."""
    found: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for r in range(rounds):
        for kind, module in KINDS.items():
            group = f"g{uuid.uuid4().hex[:8]}"
            os.environ["SEXTANT_PROCESSOR_GROUP"] = group  # read by the worker it starts
            worker = Worker(settings, root / group, module=module)
            try:
                found[kind].append(catch_up(worker, events))
            finally:
                worker.stop()
            print(f"  round {r + 1} {kind}: {found[kind][-1]:,.0f} events/s", flush=True)
    os.environ.pop("SEXTANT_PROCESSOR_GROUP")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap")
    parser.add_argument("--events", type=int, default=80_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    figures = []
    with broker(args.bootstrap) as bootstrap, tempfile.TemporaryDirectory() as tmp:
        for label, metrics in (("6 metrics", definitions("bench")), ("no metric", [])):
            settings = KafkaSection(
                kafka_bootstrap=bootstrap, topic_prefix=f"b{uuid.uuid4().hex[:8]}"
            )
            ensure_topics(settings, partitions=6)
            publisher = ConfigPublisher(settings)
            publisher.put([Project(id="bench", project_id="bench", name="Bench"), *metrics])
            publisher.close()
            produce(settings, "bench", args.events)
            print(f"catching up on {args.events:,} events, {label}")
            found = rates(settings, args.events, args.rounds, Path(tmp))
            ours, faust = (statistics.median(found[kind]) for kind in KINDS)
            figures.append(
                Figure(
                    NAME,
                    f"worker catch-up, {label}, batch-draining consumer (median of "
                    f"{args.rounds} alternating rounds)",
                    ours,
                    "events/s",
                    baseline="the same worker with faust's drain loop",
                    baseline_value=faust,
                    command=COMMAND,
                )
            )
    print(write_results(NAME, figures))


if __name__ == "__main__":
    main()

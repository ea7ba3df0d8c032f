"""Processor worker catch-up: Sextant's delivery against faust's own streams.

faust hands each fetched record to its streams with ``Service.wait_first`` (four tasks per
record), then through a channel, an ``Event`` and a queue to an agent;
``sextant.processor.faust_log`` puts each fetched batch's records straight into the stages'
buffers. On one broker and the same pre-produced events, workers of both kinds (the baseline
is the same worker with ``SEXTANT_PROCESSOR_FAUST_STREAMS=true``: faust's public path, an
agent per topic) catch up in alternating rounds, each in a consumer group of its own, with
six metric definitions and with none; the figure is the median round.

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
KINDS = {"Sextant's delivery": "false", "faust's streams": "true"}
"""Each kind of worker and its ``SEXTANT_PROCESSOR_FAUST_STREAMS``."""


def rates(settings: KafkaSection, events: int, rounds: int, root: Path) -> dict[str, list[float]]:
    """Catch-up rate of each kind of worker, rounds alternating, a new group each time."""
    found: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for r in range(rounds):
        for kind, streams in KINDS.items():
            group = f"g{uuid.uuid4().hex[:8]}"
            os.environ["SEXTANT_PROCESSOR_GROUP"] = group  # read by the worker it starts
            os.environ["SEXTANT_PROCESSOR_FAUST_STREAMS"] = streams
            worker = Worker(settings, root / group)
            try:
                found[kind].append(catch_up(worker, events))
            finally:
                worker.stop()
            print(f"  round {r + 1} {kind}: {found[kind][-1]:,.0f} events/s", flush=True)
    os.environ.pop("SEXTANT_PROCESSOR_GROUP")
    os.environ.pop("SEXTANT_PROCESSOR_FAUST_STREAMS")
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
                    f"worker catch-up, {label}, Sextant's delivery (median of "
                    f"{args.rounds} alternating rounds)",
                    ours,
                    "events/s",
                    baseline="the same worker reading through faust's streams",
                    baseline_value=faust,
                    command=COMMAND,
                )
            )
    print(write_results(NAME, figures))


if __name__ == "__main__":
    main()

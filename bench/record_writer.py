"""Writing an ``events.raw`` record: the collector's per-event cost before Kafka.

In one process, alternating for ``--rounds`` rounds, best of each: the record's key and bytes
for the collector benchmark's events, ``enriched_record()`` (values under their wire names, no
model) beside building the validated ``Envelope`` with ``enrich()`` and writing it with
``envelope_json()``.

Run: ``python -m bench.record_writer [--rounds R]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime

import orjson

from bench.collector_throughput import request_bodies
from bench.common import Figure, write_results
from sextant.schemas.events import IncomingEvent, enrich, enriched_record, envelope_json

NAME = "record_writer"
COMMAND = "python -m bench.record_writer"


def best_microseconds(work: Callable[[], int], rounds: int) -> float:
    """Best time per item of ``work`` (which returns how many items it did)."""
    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        items = work()
        best = min(best, (time.perf_counter() - began) / items * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    bodies = request_bodies(10)
    events = [IncomingEvent.model_validate(e) for b in bodies for e in orjson.loads(b)["batch"]]
    now = datetime.now(UTC)

    def records() -> int:
        for event in events:
            enriched_record(event, project_id="bench", received_at=now, client_ip="127.0.0.1")
        return len(events)

    def envelopes() -> int:
        for event in events:
            envelope = enrich(event, project_id="bench", received_at=now, client_ip="127.0.0.1")
            envelope.kafka_key().encode()
            envelope_json(envelope)
        return len(events)

    write = best_microseconds(records, args.rounds)
    model = best_microseconds(envelopes, args.rounds)
    figures = [
        Figure(
            benchmark=NAME,
            figure="µs to write one events.raw record (key and JSON) from a validated event",
            value=round(write, 2),
            unit="µs/event",
            baseline="enrich() to a validated Envelope, then envelope_json()",
            baseline_value=round(model, 2),
            command=COMMAND,
        ),
    ]
    for figure in figures:
        print(f"{figure.figure}: {figure.value} against {figure.baseline_value}")
    print(write_results(NAME, figures))


if __name__ == "__main__":
    main()

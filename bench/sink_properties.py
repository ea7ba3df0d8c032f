"""Event properties in the warehouse: the ``JSON`` type, or ``Map(String, String)``?

The same events go into two copies of the ``events`` table that differ only in the type of
``properties``, ``traits`` and ``context``: the ``JSON`` type (as in the migrations) and
``Map(String, String)`` (values as text, nested objects as JSON text). Measured in one run:
insert rate (rows sent as JSON text, as the sink does; maps need their values stringified
first, which is not counted), the three kinds of property query the gateway runs (sum of a
numeric property, breakdown by a text property, filter on two properties), and bytes on
disk. Figures: JSON's value with Map's as the baseline, best of ``--rounds``.

Run: ``python -m bench.sink_properties [--events N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson

from bench.common import Figure, write_results
from bench.sink_throughput import sample_events
from sextant.core.migrations import migrate
from sextant.core.warehouse import Warehouse, connect
from sextant.schemas.events import Envelope

COMMAND = "python -m bench.sink_properties"
BAGS = ("properties", "traits", "context")
QUERIES = {
    "sum of a numeric property": (
        "SELECT event, sum(properties.price::Float64) FROM {t} WHERE project_id = 'shop'"
        " GROUP BY event",
        "SELECT event, sum(toFloat64OrZero(properties['price'])) FROM {t}"
        " WHERE project_id = 'shop' GROUP BY event",
    ),
    "breakdown by a text property": (
        "SELECT properties.product_id::String AS v, count() FROM {t} GROUP BY v"
        " ORDER BY count() DESC LIMIT 10",
        "SELECT properties['product_id'] AS v, count() FROM {t} GROUP BY v"
        " ORDER BY count() DESC LIMIT 10",
    ),
    "filter on two properties": (
        "SELECT count() FROM {t} WHERE properties.currency::String = 'EUR'"
        " AND context.page.path::String LIKE '/products/1%'",
        "SELECT count() FROM {t} WHERE properties['currency'] = 'EUR'"
        " AND JSONExtractString(context['page'], 'path') LIKE '/products/1%'",
    ),
}


def _map_table(warehouse: Warehouse) -> None:
    ddl = str(warehouse.query_rows("SHOW CREATE TABLE events")[0][0])
    ddl = ddl.replace(".events\n", ".events_map\n", 1)
    for bag in BAGS:
        ddl = ddl.replace(f"`{bag}` JSON", f"`{bag}` Map(String, String)")
    warehouse.command(ddl)


def _as_map(values: dict[str, object]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in values.items()}


def _best(rounds: int, action: Callable[[], float]) -> float:
    return min(action() for _ in range(rounds))


def _timed(action: Callable[[], object]) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def _query_time(warehouse: Warehouse, sql: str, table: str) -> float:
    return _timed(lambda: warehouse.query_rows(sql.format(t=table)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    events = sample_events(args.events)
    columns = list(Envelope.model_fields)
    json_body = b"\n".join(e.model_dump_json().encode() for e in events)
    map_rows = []
    for e in events:
        row = e.model_dump(mode="json")
        map_rows.append(orjson.dumps(row | {bag: _as_map(row[bag]) for bag in BAGS}))
    map_body = b"\n".join(map_rows)

    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        warehouse = connect(f"chdb://{Path(tmp) / 'warehouse'}?database=b{uuid.uuid4().hex[:8]}")
        migrate(warehouse)
        _map_table(warehouse)

        def load(table: str, body: bytes) -> float:
            warehouse.command(f"TRUNCATE TABLE {table}")
            return _timed(lambda: warehouse.insert_json(table, body, columns))

        seconds = {
            "events": _best(args.rounds, lambda: load("events", json_body)),
            "events_map": _best(args.rounds, lambda: load("events_map", map_body)),
        }
        figures.append(
            Figure(
                "sink_properties",
                "insert rows/s with JSON columns",
                args.events / seconds["events"],
                "rows/s",
                "Map(String, String) columns",
                args.events / seconds["events_map"],
                command=COMMAND,
            )
        )
        for name, (json_sql, map_sql) in QUERIES.items():
            assert warehouse.query_rows(json_sql.format(t="events")) == warehouse.query_rows(
                map_sql.format(t="events_map")
            ), name
            json_s = min(_query_time(warehouse, json_sql, "events") for _ in range(args.rounds))
            map_s = min(_query_time(warehouse, map_sql, "events_map") for _ in range(args.rounds))
            figures.append(
                Figure(
                    "sink_properties",
                    f"{name} (ms)",
                    json_s * 1000,
                    "ms",
                    "Map(String, String) columns",
                    map_s * 1000,
                    command=COMMAND,
                )
            )
        warehouse.command("OPTIMIZE TABLE events FINAL")
        warehouse.command("OPTIMIZE TABLE events_map FINAL")
        size = dict(
            warehouse.query_rows(
                "SELECT table, sum(data_compressed_bytes) FROM system.parts"
                " WHERE active AND database = currentDatabase() GROUP BY table"
            )
        )
        figures.append(
            Figure(
                "sink_properties",
                "bytes on disk per event",
                size["events"] / args.events,
                "bytes",
                "Map(String, String) columns",
                size["events_map"] / args.events,
                command=COMMAND,
            )
        )
    path = write_results("sink_properties", figures)
    for f in figures:
        print(f"{f.figure}: JSON {f.value:,.1f} vs Map {f.baseline_value or 0:,.1f} {f.unit}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()

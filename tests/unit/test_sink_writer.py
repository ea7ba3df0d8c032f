"""The writer: poison rows are isolated by halving, an unavailable warehouse is not poison."""

from __future__ import annotations

import pytest

from sextant.core.kafka import Record
from sextant.core.warehouse import ClickHouseError
from sextant.sink.batch import TableRows
from sextant.sink.tables import Row
from sextant.sink.writer import WarehouseUnavailableError, data_error, write_rows

COLUMNS = ("n",)
DUPLICATE_PATH = (
    "Code: 117. DB::Exception: Cannot insert data into JSON column: Duplicate path found "
    "during parsing JSON object: a.b. (INCORRECT_DATA)"
)
UNKNOWN_TABLE = "Code: 60. DB::Exception: Table db.events does not exist. (UNKNOWN_TABLE)"


class Engine:
    """Accepts rows unless one is poison or the engine is down; honours dedup tokens."""

    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.rows: list[bytes] = []
        self.tokens: list[str] = []
        self.attempts = 0

    def insert_json(
        self, table: str, rows: bytes, column_names: tuple[str, ...], dedup_token: str | None = None
    ) -> None:
        self.attempts += 1
        if self.down:
            raise ClickHouseError(UNKNOWN_TABLE)
        lines = rows.split(b"\n")
        if any(b"poison" in line for line in lines):
            raise ClickHouseError(DUPLICATE_PATH)
        assert dedup_token is not None
        if dedup_token in self.tokens:
            return
        self.tokens.append(dedup_token)
        self.rows.extend(lines)


def table_rows(values: list[str]) -> TableRows:
    rows = TableRows()
    for offset, value in enumerate(values):
        line = value.encode()
        rows.add(Row(None, 0, line), Record("t.events.raw", 0, offset, None, line, 0))
    return rows


def test_rows_the_engine_refuses_are_found_and_the_others_inserted() -> None:
    values = [f'{{"n":{i}}}' for i in range(16)]
    values[3] = '{"poison":1}'
    values[12] = '{"poison":2}'
    engine = Engine()
    result = write_rows(engine, "events", COLUMNS, table_rows(values), "tok")
    assert sorted(engine.rows) == sorted(v.encode() for v in values if "poison" not in v)
    assert [record.offset for record, _ in result.refused] == [3, 12]
    assert all("Duplicate path" in reason for _, reason in result.refused)
    assert result.rows == 14
    assert engine.attempts < 16 * 2  # halving, not one insert per row


def test_a_retried_write_skips_the_parts_that_went_in_before() -> None:
    values = ['{"n":1}', '{"poison":1}', '{"n":2}', '{"n":3}']
    engine = Engine()
    write_rows(engine, "events", COLUMNS, table_rows(values), "tok")
    write_rows(engine, "events", COLUMNS, table_rows(values), "tok")
    assert sorted(engine.rows) == [b'{"n":1}', b'{"n":2}', b'{"n":3}']


def test_an_unavailable_warehouse_is_never_taken_for_poison() -> None:
    engine = Engine(down=True)
    with pytest.raises(WarehouseUnavailableError, match="UNKNOWN_TABLE"):
        write_rows(engine, "events", COLUMNS, table_rows(['{"n":1}', '{"n":2}']), "tok")
    assert engine.attempts == 1


@pytest.mark.parametrize(
    ("error", "poison"),
    [
        (ClickHouseError(DUPLICATE_PATH), True),
        (
            ClickHouseError("Code: 27. Cannot parse input: expected '{' (CANNOT_PARSE_INPUT_…)"),
            True,
        ),
        (ClickHouseError(UNKNOWN_TABLE), False),
        (ClickHouseError("Code: 252. Too many parts (TOO_MANY_PARTS)"), False),
        (ClickHouseError("Code: 241. Memory limit exceeded (MEMORY_LIMIT_EXCEEDED)"), False),
        (ClickHouseError("HTTPConnectionPool: Connection refused"), False),
        (ConnectionRefusedError(111, "Connection refused"), False),
    ],
)
def test_only_errors_about_the_data_are_poison(error: Exception, poison: bool) -> None:
    assert (data_error(error) is not None) is poison

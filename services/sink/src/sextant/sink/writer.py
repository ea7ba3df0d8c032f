"""Insert one table's rows, telling a warehouse that is away from a row it refuses for good.

A failed insert is either about the data (the engine cannot parse or store a value: the same
rows will always fail) or about the warehouse (unreachable, a table missing or read-only, too
many parts, out of memory: retrying later helps). Only the first kind is poison. The writer
splits a refused insert in halves until it finds the rows at fault, inserts the others, and
returns the culprits; any other failure is raised as :class:`WarehouseUnavailableError` and the
caller retries the whole table later (tokens make the parts already inserted no-ops).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

from sextant.core.batch_consumer import ConsumedRecord
from sextant.core.warehouse import ClickHouseError
from sextant.sink.batch import TableRows

# ClickHouse error codes that mean "this data cannot be stored in this column", whatever the
# state of the server. Anything else is treated as the warehouse being unavailable: a wrongly
# classified error then stalls the partition visibly (not ready, retrying) instead of sending
# good records to the dead-letter topic.
DATA_ERROR_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        26,  # CANNOT_PARSE_QUOTED_STRING
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA (e.g. a JSON object with a path twice)
        131,  # TOO_LARGE_STRING_SIZE
        190,  # SIZES_OF_ARRAYS_DONT_MATCH
        306,  # TOO_DEEP_RECURSION
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
        376,  # CANNOT_PARSE_UUID
        377,  # ILLEGAL_SYNTAX_FOR_DATA_TYPE
    }
)
_CODE = re.compile(r"Code: (\d+)")


class Store(Protocol):
    """Where rows go: :class:`sextant.core.warehouse.Warehouse` in production."""

    def insert_json(
        self,
        table: str,
        rows: bytes,
        column_names: tuple[str, ...],
        dedup_token: str | None = None,
    ) -> None: ...


class WarehouseUnavailableError(RuntimeError):
    """The warehouse did not take the rows now; it may later."""


def data_error(error: BaseException) -> str | None:
    """The reason, when ``error`` says the data itself can never be inserted."""
    if not isinstance(error, ClickHouseError):
        return None
    text = str(error)
    match = _CODE.search(text)
    if match is None or int(match.group(1)) not in DATA_ERROR_CODES:
        return None
    return "warehouse refused the row: " + " ".join(text.split())


@dataclass
class WriteResult:
    rows: int = 0
    bytes: int = 0
    inserts: int = 0
    refused: list[tuple[ConsumedRecord, str]] = field(default_factory=list)


def write_rows(
    store: Store, table: str, columns: tuple[str, ...], rows: TableRows, token: str
) -> WriteResult:
    """Insert ``rows`` under ``token``; return what went in and the rows refused for good.

    Raises :class:`WarehouseUnavailableError` for any failure not about the data.
    """
    result = WriteResult()
    _insert(store, table, columns, rows, 0, len(rows), token, result)
    return result


def _insert(
    store: Store,
    table: str,
    columns: tuple[str, ...],
    rows: TableRows,
    lo: int,
    hi: int,
    token: str,
    result: WriteResult,
) -> None:
    body = b"\n".join(rows.lines[lo:hi])
    try:
        store.insert_json(table, body, columns, token)
    except Exception as error:  # classified right below
        reason = data_error(error)
        if reason is None:
            raise WarehouseUnavailableError(f"{table}: {error}") from error
    else:
        result.rows += hi - lo
        result.bytes += len(body)
        result.inserts += 1
        return
    if hi - lo == 1:
        result.refused.append((rows.sources[lo], reason))
        return
    middle = (lo + hi) // 2
    # Sub-ranges get tokens of their own, derived from the batch's: deterministic, so a retry
    # of the same batch skips the halves that went in before.
    _insert(store, table, columns, rows, lo, middle, f"{token}#{lo}-{middle}", result)
    _insert(store, table, columns, rows, middle, hi, f"{token}#{middle}-{hi}", result)

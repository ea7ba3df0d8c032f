"""The SQL side of the HyperLogLog (``sextant.schemas.sketches``) against the real engine:
the same hash, the same register-wise merge and the same rank histogram as Python."""

from __future__ import annotations

import pytest

from sextant.core.warehouse import Warehouse
from sextant.schemas.sketches import (
    HLL_REGISTERS,
    hash64,
    hll_add,
    hll_hash_sql,
    hll_histogram,
    hll_histogram_sql,
    hll_merge_sparse,
    hll_pack,
    hll_register_sql,
)


def _sketch(users: range) -> list[int]:
    registers = bytearray(HLL_REGISTERS)
    for user in users:
        hll_add(registers, f"user-{user}")
    return hll_pack(registers)


SKETCHES = [[], _sketch(range(1)), _sketch(range(300)), _sketch(range(100, 20_000))]


def test_the_sql_hash_is_the_python_hash(warehouse: Warehouse) -> None:
    ids = ["abc", "user-1", "ü-ñ"]
    rows = warehouse.query_rows(
        f"SELECT {hll_hash_sql('id')} FROM (SELECT arrayJoin({{ids:Array(String)}}) AS id)",
        {"ids": ids},
    )
    assert [row[0] for row in rows] == [hash64(i) for i in ids]


@pytest.mark.parametrize("sketch", SKETCHES, ids=lambda s: f"{len(s)} registers")
def test_the_sql_histogram_is_the_python_histogram(warehouse: Warehouse, sketch: list[int]) -> None:
    [(histogram,)] = warehouse.query_rows(
        f"SELECT {hll_histogram_sql('s')} FROM (SELECT {{s:Array(UInt32)}} AS s)", {"s": sketch}
    )
    expected = hll_histogram(sketch)
    top = max((packed & 63 for packed in sketch), default=0)
    assert list(histogram) == expected[: top + 1]
    assert not any(expected[top + 1 :])


def test_the_largest_packed_int_per_register_is_the_merge(warehouse: Warehouse) -> None:
    rows = warehouse.query_rows(
        f"""
        SELECT arraySort(groupArray(packed)) FROM (
            SELECT max(element) AS packed
            FROM (SELECT arrayJoin({{sketches:Array(Array(UInt32))}}) AS hll)
            ARRAY JOIN hll AS element
            GROUP BY {hll_register_sql("element")}
        )
        """,
        {"sketches": SKETCHES},
    )
    assert list(rows[0][0]) == hll_merge_sparse(*SKETCHES)

"""Body limits hold on the wire and after gzip inflation; a gzip bomb is refused, not inflated."""

from __future__ import annotations

import gzip
import tracemalloc
from collections.abc import AsyncIterator

import pytest

from sextant.collector.body import read_limited
from sextant.collector.errors import ApiError


async def chunks(data: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read(
    data: bytes, limit: int, encoding: str | None = None, length: str | None = None
) -> bytes:
    return await read_limited(
        chunks(data), limit=limit, content_length=length, content_encoding=encoding
    )


async def test_plain_body_within_the_limit_is_returned_whole() -> None:
    assert await read(b"x" * 1000, limit=1000) == b"x" * 1000


async def test_plain_body_over_the_limit_is_413_while_streaming() -> None:
    with pytest.raises(ApiError) as caught:
        await read(b"x" * 1001, limit=1000)
    assert caught.value.status == 413
    assert caught.value.body.where == "body"


async def test_declared_length_over_the_limit_is_413_before_reading() -> None:
    with pytest.raises(ApiError) as caught:
        await read(b"", limit=1000, length="5000")
    assert caught.value.status == 413
    assert caught.value.body.where == "header Content-Length"


async def test_gzip_body_is_inflated() -> None:
    assert await read(gzip.compress(b'{"a": 1}'), limit=1000, encoding="gzip") == b'{"a": 1}'


async def test_gzip_inflating_past_the_limit_is_413() -> None:
    small_on_the_wire = gzip.compress(b" " * 5000)
    assert len(small_on_the_wire) < 1000
    with pytest.raises(ApiError) as caught:
        await read(small_on_the_wire, limit=1000, encoding="gzip")
    assert caught.value.status == 413
    assert "inflat" in caught.value.body.where


async def test_gzip_bomb_is_refused_without_inflating_it() -> None:
    bomb = gzip.compress(b"\0" * (200 * 1024 * 1024), compresslevel=9)  # 200 MB inflated
    tracemalloc.start()
    try:
        with pytest.raises(ApiError) as caught:
            await read(bomb, limit=500 * 1024, encoding="gzip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.status == 413
    assert peak < 8 * 1024 * 1024


async def test_broken_gzip_is_400() -> None:
    with pytest.raises(ApiError) as caught:
        await read(b"not gzip at all", limit=1000, encoding="gzip")
    assert caught.value.status == 400


async def test_truncated_gzip_is_400() -> None:
    with pytest.raises(ApiError) as caught:
        await read(gzip.compress(b"x" * 500)[:-12], limit=1000, encoding="gzip")
    assert caught.value.status == 400
    assert "truncated" in caught.value.body.message


async def test_unknown_encoding_is_400() -> None:
    with pytest.raises(ApiError) as caught:
        await read(b"{}", limit=1000, encoding="br")
    assert caught.value.status == 400
    assert caught.value.body.where == "header Content-Encoding"

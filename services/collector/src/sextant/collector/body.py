"""Reading a request body within the size limits, before anything parses it.

The limit holds for the bytes on the wire and again for the inflated bytes of a gzip body, and
inflation stops as soon as the limit is passed: a gzip bomb costs at most ``limit`` bytes of
memory, never its inflated size.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

from sextant.collector.errors import bad_request, too_large

GZIP_WINDOW = 16 + zlib.MAX_WBITS


class BoundedInflater:
    """Inflates gzip chunk by chunk; raises 413 once the output would pass ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._inflater = zlib.decompressobj(GZIP_WINDOW)
        self._parts: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        data = chunk
        try:
            while data:
                out = self._inflater.decompress(data, self.limit - self.size + 1)
                self._take(out)
                data = self._inflater.unconsumed_tail
                if self._inflater.eof and self._inflater.unused_data.strip(b"\0"):
                    raise bad_request("data after the end of the gzip stream", "body (gzip)")
        except zlib.error as error:
            raise bad_request(f"the body is not valid gzip: {error}", "body (gzip)") from error

    def _take(self, out: bytes) -> None:
        self.size += len(out)
        if self.size > self.limit:
            raise too_large(
                f"the request body inflates to more than {self.limit} bytes",
                "body (after gzip inflation)",
            )
        self._parts.append(out)

    def finish(self) -> bytes:
        try:
            self._take(self._inflater.flush())
        except zlib.error as error:
            raise bad_request(f"the body is not valid gzip: {error}", "body (gzip)") from error
        if not self._inflater.eof:
            raise bad_request("the gzip stream is truncated", "body (gzip)")
        return b"".join(self._parts)


async def read_limited(
    chunks: AsyncIterator[bytes],
    *,
    limit: int,
    content_length: str | None,
    content_encoding: str | None,
) -> bytes:
    """The (inflated) body, or an :class:`ApiError` 413/400/415 before it is all read."""
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise too_large(
            f"Content-Length {content_length} is larger than the limit of {limit} bytes",
            "header Content-Length",
        )
    encoding = (content_encoding or "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        raise bad_request(
            f"unsupported Content-Encoding {content_encoding!r}; use gzip or none",
            "header Content-Encoding",
        )
    inflater = BoundedInflater(limit) if encoding != "identity" else None
    parts: list[bytes] = []
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > limit:
            raise too_large(f"the request body is larger than {limit} bytes")
        if inflater is not None:
            inflater.feed(chunk)
        else:
            parts.append(chunk)
    return inflater.finish() if inflater is not None else b"".join(parts)

"""Reading a request body within the size limits, before anything parses it.

The limit holds for the bytes on the wire and again for the inflated bytes of a gzip body, and
inflation stops as soon as the limit is passed: a gzip bomb costs at most ``limit`` bytes of
memory, never its inflated size.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
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


GZIP_MAGIC = b"\x1f\x8b"
FORM_TYPE = "application/x-www-form-urlencoded"
COMPRESSIONS = ("gzip", "gzip-js", "base64")


def decode_payload(
    body: bytes, *, limit: int, content_type: str | None, compression: str | None
) -> bytes:
    """The JSON text of a body in any encoding browsers' analytics clients send.

    posthog-js gzips its bodies and posts them as ``text/plain`` with no header saying so (or
    with ``?compression=gzip-js``), so gzip is recognised by its magic bytes whatever the
    headers say; with ``sendBeacon`` on unload it posts a form ``data=<base64 JSON>`` with
    ``?compression=base64``. Plain JSON passes unchanged, whatever its content type.
    """
    wanted = (compression or "").strip().lower() or None
    if wanted is not None and wanted not in COMPRESSIONS:
        raise bad_request(
            f"unsupported compression {compression!r}; use gzip-js, base64 or none",
            "query compression",
        )
    if body[:2] == GZIP_MAGIC:
        return _inflate(body, limit)
    if wanted in ("gzip", "gzip-js"):
        raise bad_request(f"compression={wanted} but the body is not gzip", "body")
    if _is_form(body, content_type):
        return _form_data(body, wanted)
    if wanted == "base64":
        return _base64(body.strip(), "body")
    return body


def _inflate(body: bytes, limit: int) -> bytes:
    inflater = BoundedInflater(limit)
    inflater.feed(body)
    return inflater.finish()


def _is_form(body: bytes, content_type: str | None) -> bool:
    if content_type is not None and content_type.lower().startswith(FORM_TYPE):
        return True
    return body.startswith(b"data=")


def _form_data(body: bytes, compression: str | None) -> bytes:
    try:
        fields = urllib.parse.parse_qs(body.decode("ascii"), keep_blank_values=True)
    except UnicodeDecodeError as error:
        raise bad_request("a form body must be URL-encoded ASCII", "body") from error
    values = fields.get("data")
    if not values:
        raise bad_request("a form body needs a 'data' field holding the events", "body.data")
    data = values[0].strip()
    compression = compression or next(iter(fields.get("compression", [])), None)
    if compression == "base64" or not data.startswith(("{", "[")):
        # A '+' of base64 that was not percent-encoded arrives as a space.
        return _base64(data.replace(" ", "+").encode("ascii"), "body.data")
    return data.encode()


def _base64(data: bytes, where: str) -> bytes:
    try:
        return base64.b64decode(data + b"=" * (-len(data) % 4), altchars=None, validate=False)
    except binascii.Error as error:
        raise bad_request(f"not valid base64: {error}", where) from error

"""Feature definitions, kept current in the background, for evaluation without a network call.

The collector serves a project environment's features to its client key in GrowthBook's SDK
payload format (``GET /api/features/{clientKey}``, with an ``ETag``), and pushes the payload
again whenever it changes (``GET /sub/{clientKey}``, Server-Sent Events, ``event: features``).
:class:`FeatureCache` fetches once, then follows the stream on a daemon thread; while the
stream cannot be held it polls every ``refresh_interval`` seconds, and tries the stream again.
The last good payload is served throughout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson

from sextant.schemas.flags import FeatureSet, decrypt
from sextant.sdk._refresh import RefreshedDocument

log = logging.getLogger("sextant.sdk")

FEATURES_PATH = "/api/features/"
STREAM_PATH = "/sub/"
_STREAM_RETRY_S = 5.0


def read_payload(content: bytes, decryption_key: str | None) -> dict[str, Any]:
    """The features of a payload (decrypted with ``decryption_key`` when encrypted)."""
    document = orjson.loads(content)
    if not isinstance(document, dict):
        raise ValueError("the features endpoint must answer a JSON object")
    encrypted = document.get("encryptedFeatures")
    if isinstance(encrypted, str):
        if not decryption_key:
            raise ValueError("the payload is encrypted and no decryption_key was given")
        features = orjson.loads(decrypt(encrypted, decryption_key))
    else:
        features = document.get("features")
    if not isinstance(features, dict):
        raise ValueError("the payload has no features object")
    return features


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """``(event, data)`` of a Server-Sent Events stream's lines."""
    event, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", list[str]()
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)


class FeatureCache(RefreshedDocument[dict[str, Any]]):
    """The environment's features, as the client key reads them, kept current by a thread."""

    what = "features"

    def __init__(
        self,
        make_http: Callable[[], httpx.Client],
        host: str,
        client_key: str,
        *,
        decryption_key: str | None,
        streaming: bool,
        refresh_interval: float,
        first_load_timeout: float,
    ) -> None:
        base = host.rstrip("/")
        self._stream_url = f"{base}{STREAM_PATH}{client_key}"
        self._decryption_key = decryption_key
        self._streaming = streaming
        self.streamed = 0
        self._flags = FeatureSet({})
        super().__init__(
            make_http,
            f"{base}{FEATURES_PATH}{client_key}",
            {},
            lambda content: read_payload(content, decryption_key),
            refresh_interval=refresh_interval,
            first_load_timeout=first_load_timeout,
        )

    def _reset_runtime(self) -> None:
        super()._reset_runtime()
        self.streaming_now = False

    def get(self) -> dict[str, Any]:
        """The current features; the first call waits (briefly) for the first fetch."""
        return self.latest()

    def flags(self) -> FeatureSet:
        """The current features, compiled: a new payload's features are each compiled on
        their first evaluation."""
        flags = self._flags
        if flags.features is self.current and self._thread is not None and self._loaded.is_set():
            return flags
        features = self.latest()
        if flags.features is not features:
            flags = self._flags = FeatureSet(features)
        return flags

    def _run(self) -> None:
        self.refresh()
        failures = 0
        while not self._stop.is_set():
            wait = self._refresh_interval
            if self._streaming:
                streamed = self.streamed
                self._follow_stream()
                # A stream that broke at once backs off towards the polling interval.
                failures = 0 if self.streamed > streamed else failures + 1
                wait = min(self._refresh_interval, _STREAM_RETRY_S * 2 ** min(failures, 6))
            if self._stop.wait(wait):
                return
            self.refresh()

    def _follow_stream(self) -> None:
        try:
            timeout = httpx.Timeout(10.0, read=60.0)
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            with self.http().stream("GET", self._stream_url, headers=headers, timeout=timeout) as r:
                r.raise_for_status()
                self.streaming_now = True
                for event, data in sse_events(r.iter_lines()):
                    if self._stop.is_set():
                        return
                    if event == "features":
                        self.current = read_payload(data.encode(), self._decryption_key)
                        self.streamed += 1
                        self._loaded.set()
                    elif event == "features-updated":
                        self.refresh()
        except (httpx.HTTPError, ValueError) as exc:
            if not self._stop.is_set():
                log.info("feature stream interrupted (polling meanwhile): %s", exc)
        finally:
            self.streaming_now = False

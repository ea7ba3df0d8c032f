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
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson

from sextant.schemas.flags import decrypt

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


class FeatureCache:
    """The environment's features, as the client key reads them, kept current by a thread."""

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
        self._make_http = make_http
        self._url = f"{base}{FEATURES_PATH}{client_key}"
        self._stream_url = f"{base}{STREAM_PATH}{client_key}"
        self._decryption_key = decryption_key
        self._streaming = streaming
        self._refresh_interval = refresh_interval
        self._first_load_timeout = first_load_timeout
        self.features: dict[str, Any] = {}
        self._etag: str | None = None
        self.refreshed = 0
        self.refresh_errors = 0
        self.streamed = 0
        self._reset_runtime()

    def _reset_runtime(self) -> None:
        self._http: httpx.Client | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._fetching = threading.Lock()
        self._stop = threading.Event()
        self._loaded = threading.Event()
        self.streaming_now = False
        if self.refreshed:
            self._loaded.set()

    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="sextant-sdk-features", daemon=True
                )
                self._thread.start()

    def get(self) -> dict[str, Any]:
        """The current features; the first call waits (briefly) for the first fetch."""
        if self._thread is None:
            self.start()
        if not self._loaded.is_set():
            self._loaded.wait(self._first_load_timeout)
        return self.features

    def refresh(self) -> bool:
        """Fetch the payload now; on failure keep the current one. True on success."""
        with self._fetching:
            headers = {} if self._etag is None else {"If-None-Match": self._etag}
            try:
                if self._http is None:
                    self._http = self._make_http()
                response = self._http.get(self._url, headers=headers)
                if response.status_code != 304:
                    response.raise_for_status()
                    self.features = read_payload(response.content, self._decryption_key)
                    self._etag = response.headers.get("etag")
            except (httpx.HTTPError, ValueError) as exc:
                self.refresh_errors += 1
                log.warning("could not refresh features (serving the last): %s", exc)
                return False
            finally:
                self._loaded.set()
            self.refreshed += 1
            return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        if self._http is not None:
            self._http.close()

    def after_fork_in_child(self) -> None:
        self._reset_runtime()

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
            if self._http is None:
                self._http = self._make_http()
            timeout = httpx.Timeout(10.0, read=60.0)
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            with self._http.stream("GET", self._stream_url, headers=headers, timeout=timeout) as r:
                r.raise_for_status()
                self.streaming_now = True
                for event, data in sse_events(r.iter_lines()):
                    if self._stop.is_set():
                        return
                    if event == "features":
                        self.features = read_payload(data.encode(), self._decryption_key)
                        self.streamed += 1
                        self._loaded.set()
                    elif event == "features-updated":
                        self.refresh()
        except (httpx.HTTPError, ValueError) as exc:
            if not self._stop.is_set():
                log.info("feature stream interrupted (polling meanwhile): %s", exc)
        finally:
            self.streaming_now = False

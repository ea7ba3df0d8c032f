"""A document of the service's, kept current by a daemon thread for calls that must not wait.

Experiment definitions and feature payloads are read the same way: fetched on first use with
their ``ETag`` (a matching ``If-None-Match`` gets 304), refreshed in the background, and the
last good copy served while the service cannot be reached. A forked child keeps the copy and
starts its own thread and connections.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

import httpx

log = logging.getLogger("sextant.sdk")

T = TypeVar("T")

RETRY_AFTER_FAILURE_S = 5.0


class RefreshedDocument(Generic[T]):
    """``parse`` of what ``url`` answers, kept fresh every ``refresh_interval`` seconds."""

    what = "document"
    """Named in the warning logged when a refresh fails."""

    def __init__(
        self,
        make_http: Callable[[], httpx.Client],
        url: str,
        empty: T,
        parse: Callable[[bytes], T],
        *,
        auth: httpx.Auth | None = None,
        refresh_interval: float,
        first_load_timeout: float,
    ) -> None:
        self._make_http = make_http
        self._url = url
        self._parse = parse
        self._auth = auth
        self._refresh_interval = refresh_interval
        self._first_load_timeout = first_load_timeout
        self.current: T = empty
        self._etag: str | None = None
        self.refreshed = 0
        self.refresh_errors = 0
        self._reset_runtime()

    def _reset_runtime(self) -> None:
        self._http: httpx.Client | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._fetching = threading.Lock()
        self._stop = threading.Event()
        self._loaded = threading.Event()
        if self.refreshed:  # a forked child keeps what its parent had fetched
            self._loaded.set()

    def start(self) -> None:
        """Start the refresh thread (once per process)."""
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                name = f"sextant-sdk-{self.what.replace(' ', '-')}"
                self._thread = threading.Thread(target=self._run, name=name, daemon=True)
                self._thread.start()

    def latest(self) -> T:
        """The current copy; the first call waits (briefly) for the first fetch."""
        if self._thread is None:
            self.start()
        if not self._loaded.is_set():
            self._loaded.wait(self._first_load_timeout)
        return self.current

    def refresh(self) -> bool:
        """Fetch now; on failure keep the current copy. True on success."""
        with self._fetching:
            headers = {} if self._etag is None else {"If-None-Match": self._etag}
            try:
                response = self.http().get(self._url, headers=headers, auth=self._auth)
                if response.status_code != 304:
                    response.raise_for_status()
                    self.current = self._parse(response.content)
                    self._etag = response.headers.get("etag")
            except (httpx.HTTPError, ValueError) as exc:
                self.refresh_errors += 1
                log.warning("could not refresh %s (serving the last): %s", self.what, exc)
                return False
            finally:
                self._loaded.set()
            self.refreshed += 1
            return True

    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = self._make_http()
        return self._http

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        if self._http is not None:
            self._http.close()

    def after_fork_in_child(self) -> None:
        """The parent's thread and connections do not exist here; the copy stays."""
        self._reset_runtime()

    def _run(self) -> None:
        while not self._stop.is_set():
            ok = self.refresh()
            interval = self._refresh_interval
            self._stop.wait(interval if ok else min(interval, RETRY_AFTER_FAILURE_S))

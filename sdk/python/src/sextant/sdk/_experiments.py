"""Experiment definitions, fetched and kept fresh, and which units have been exposed already.

Two services answer ``GET /v1/experiments/definitions`` with a JSON list of experiment
documents (and an ``ETag``; a matching ``If-None-Match`` gets 304):

- the collector, to the project's write key (HTTP Basic user name), with the assignment fields
  only (:data:`sextant.schemas.experiments.ASSIGNMENT_FIELDS`): the default, so an application
  needs nothing but its write key;
- the gateway, to a read key (Bearer token), with whole :class:`sextant.schemas.config.Experiment`
  documents.

Both are read into :class:`sextant.schemas.experiments.ExperimentDefinition`, which ignores the
fields it does not use. The cache fetches on first use, refreshes in the background, and keeps
serving the last good copy while the service cannot be reached.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Generator, Hashable

import httpx
import orjson
from pydantic import ValidationError

from sextant.schemas.experiments import ExperimentDefinition

log = logging.getLogger("sextant.sdk")

DEFINITIONS_PATH = "/v1/experiments/definitions"
_RETRY_AFTER_FAILURE_S = 5.0


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer <token>``, as the gateway takes read keys."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


def parse_definitions(content: bytes) -> dict[str, ExperimentDefinition]:
    """Experiments by key from the service's JSON list; invalid documents are skipped."""
    documents = orjson.loads(content)
    if not isinstance(documents, list):
        raise ValueError("the definitions endpoint must answer a JSON list of experiments")
    experiments: dict[str, ExperimentDefinition] = {}
    for document in documents:
        try:
            experiment = ExperimentDefinition.model_validate(document)
        except ValidationError as exc:
            log.warning("skipping an experiment definition the SDK cannot read: %s", exc)
            continue
        experiments[experiment.id] = experiment
    return experiments


class DefinitionCache:
    """The experiments of the key's project, kept fresh by a daemon thread.

    ``url`` is the definitions endpoint and ``auth`` the key it takes. The thread starts with
    :meth:`start`, or with the first :meth:`get`.
    """

    def __init__(
        self,
        make_http: Callable[[], httpx.Client],
        url: str,
        auth: httpx.Auth,
        *,
        refresh_interval: float,
        first_load_timeout: float,
    ) -> None:
        self._make_http = make_http
        self._url = url
        self._auth = auth
        self._refresh_interval = refresh_interval
        self._first_load_timeout = first_load_timeout
        self._experiments: dict[str, ExperimentDefinition] = {}
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
        self._first_attempt = threading.Event()
        if self.refreshed:  # a forked child keeps what its parent had fetched
            self._first_attempt.set()

    def start(self) -> None:
        """Start the refresh thread (once per process)."""
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="sextant-sdk-experiments", daemon=True
                )
                self._thread.start()

    def get(self, key: str) -> ExperimentDefinition | None:
        """The experiment ``key``; the first call waits (briefly) for the first fetch."""
        if self._thread is None:
            self.start()
        if not self._first_attempt.is_set():
            self._first_attempt.wait(self._first_load_timeout)
        return self._experiments.get(key)

    def refresh(self) -> bool:
        """Fetch the definitions now; on failure keep the previous ones. True on success."""
        with self._fetching:
            headers = {} if self._etag is None else {"If-None-Match": self._etag}
            try:
                if self._http is None:
                    self._http = self._make_http()
                response = self._http.get(self._url, headers=headers, auth=self._auth)
                if response.status_code != 304:
                    response.raise_for_status()
                    self._experiments = parse_definitions(response.content)
                    self._etag = response.headers.get("etag")
            except (httpx.HTTPError, ValueError) as exc:
                self.refresh_errors += 1
                log.warning("could not refresh experiment definitions (serving the last): %s", exc)
                return False
            finally:
                self._first_attempt.set()
            self.refreshed += 1
            return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        if self._http is not None:
            self._http.close()

    def after_fork_in_child(self) -> None:
        """The parent's thread and connections do not exist here; the definitions stay."""
        self._reset_runtime()

    def _run(self) -> None:
        while not self._stop.is_set():
            ok = self.refresh()
            interval = self._refresh_interval
            self._stop.wait(interval if ok else min(interval, _RETRY_AFTER_FAILURE_S))


class SeenUnits:
    """A bounded set of (experiment, unit) pairs already exposed in this process.

    Forgetting the oldest pairs beyond ``capacity`` keeps memory flat in long-lived servers;
    an exposure logged twice is harmless (the processor keeps the first one per unit).
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[Hashable, None] = OrderedDict()
        self._lock = threading.Lock()

    def first(self, key: Hashable) -> bool:
        """True the first time ``key`` is seen (and remembers it)."""
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return False
            self._seen[key] = None
            if len(self._seen) > self._capacity:
                self._seen.popitem(last=False)
            return True

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

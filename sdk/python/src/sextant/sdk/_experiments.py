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
from sextant.sdk._refresh import RefreshedDocument

log = logging.getLogger("sextant.sdk")

DEFINITIONS_PATH = "/v1/experiments/definitions"


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


class DefinitionCache(RefreshedDocument[dict[str, ExperimentDefinition]]):
    """The experiments of the key's project, kept fresh by a daemon thread.

    ``url`` is the definitions endpoint and ``auth`` the key it takes. The thread starts with
    :meth:`start`, or with the first :meth:`get`.
    """

    what = "experiment definitions"

    def __init__(
        self,
        make_http: Callable[[], httpx.Client],
        url: str,
        auth: httpx.Auth,
        *,
        refresh_interval: float,
        first_load_timeout: float,
    ) -> None:
        super().__init__(
            make_http,
            url,
            {},
            parse_definitions,
            auth=auth,
            refresh_interval=refresh_interval,
            first_load_timeout=first_load_timeout,
        )

    def get(self, key: str) -> ExperimentDefinition | None:
        """The experiment ``key``; the first call waits (briefly) for the first fetch."""
        return self.latest().get(key)


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

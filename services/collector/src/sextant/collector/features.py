"""Feature payloads for GrowthBook's SDKs (and Sextant's), by client key, and their changes.

:class:`FeaturePayloads` keeps each environment's payload (GrowthBook's format, built by
:func:`sextant.schemas.features.features_payload`) as bytes with an ETag, rebuilt only when
the config changes or a time it depends on passes (an experiment starting or stopping);
:class:`FeatureHub` tells the open streams (``/sub/{clientKey}``) that something may have
changed, so each sends its payload again if, and only if, its ETag moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from sextant.core.config_plane import ConfigState
from sextant.core.secrets import SecretBox, encrypt_payload, open_secret
from sextant.schemas.config import ApiKey, ConfigDocument, Experiment, Project
from sextant.schemas.features import features_payload
from sextant.schemas.flags import FeatureSet

__all__ = ["FeatureHub", "FeaturePayloads", "Payload", "posthog_feature_flags"]


@dataclass(frozen=True)
class Payload:
    body: bytes
    etag: str
    features: dict[str, Any]
    """The clear features (what the project's own evaluations read)."""
    flags: FeatureSet
    """The same, compiled for evaluation (each feature once per payload)."""


@dataclass
class _Entry:
    version: int
    valid_until: datetime | None
    payload: Payload


def _next_boundary(experiments: list[Experiment], now: datetime) -> datetime | None:
    """The first moment after ``now`` at which an experiment starts or stops."""
    moments = [m for e in experiments for m in (e.start, e.stop) if m is not None and m > now]
    return min(moments, default=None)


class FeaturePayloads:
    """Each (project, environment[, payload key]) payload, built once per config change."""

    def __init__(self, state: ConfigState, secrets: SecretBox | None) -> None:
        self._state = state
        self._secrets = secrets
        self._cache: dict[tuple[str, str, str], _Entry] = {}
        self._lock = threading.Lock()

    def for_key(self, key: ApiKey, now: datetime) -> Payload:
        """The payload a client key reads: its environment's, encrypted with its payload key
        when it has one (``MissingSecretKey``/``UnreadableSecret`` when that cannot be
        opened)."""
        return self.get(key.project_id, key.environment or "", now, key.payload_key)

    def get(
        self, project_id: str, environment: str, now: datetime, sealed_key: str = ""
    ) -> Payload:
        cache_key = (project_id, environment, sealed_key)
        version = self._state.version
        with self._lock:
            entry = self._cache.get(cache_key)
        if (
            entry is not None
            and entry.version == version
            and (entry.valid_until is None or now < entry.valid_until)
        ):
            return entry.payload
        experiments = self._state.experiments(project_id)
        document = features_payload(self._state.features(project_id), experiments, environment, now)
        features = document["features"]
        if sealed_key:
            clear_key = open_secret(sealed_key, self._secrets, "a client key's payload key")
            document["encryptedFeatures"] = encrypt_payload(
                orjson.dumps(features).decode(), clear_key
            )
            document["features"] = {}
        body = orjson.dumps(document)
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        payload = Payload(body, etag, features, FeatureSet(features))
        with self._lock:
            self._cache[cache_key] = _Entry(version, _next_boundary(experiments, now), payload)
        return payload

    def due(self, now: datetime) -> bool:
        """Whether a cached payload has passed a moment it depends on."""
        with self._lock:
            return any(
                e.valid_until is not None and now >= e.valid_until for e in self._cache.values()
            )


class FeatureHub:
    """Wakes the open streams when the config changes (from the follower's thread) or a
    payload's moment passes (checked every ``tick_s``)."""

    def __init__(
        self,
        state: ConfigState,
        payloads: FeaturePayloads,
        clock: Callable[[], datetime],
        tick_s: float = 1.0,
    ) -> None:
        self._payloads = payloads
        self._clock = clock
        self._tick_s = tick_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.streams = 0
        state.subscribe(self._on_config)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._task = asyncio.create_task(self._tick())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._wake()  # streams waiting now end their wait and see the server stopping

    def _on_config(self, _key: str, _document: ConfigDocument | None) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            if self._payloads.due(self._clock()):
                self._wake()

    async def wait(self, timeout_s: float) -> None:
        """Until something may have changed, or ``timeout_s``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout_s)


def posthog_feature_flags(
    payloads: FeaturePayloads,
    project: Project,
    distinct_id: str,
    person_properties: dict[str, Any],
    now: datetime,
) -> dict[str, tuple[bool | str, Any]]:
    """The project's features for posthog-js (``/flags``), evaluated for ``distinct_id`` in
    the project's ``flags_environment``: key → (flag value, payload). A boolean feature is an
    on/off flag; a string one a multivariate flag whose variant is the value; a number or JSON
    one is on while its value is truthy, with the value as the flag's payload."""
    payload = payloads.get(project.id, project.flags_environment, now)
    attributes = person_properties | {"id": distinct_id, "distinct_id": distinct_id}
    flags: dict[str, tuple[bool | str, Any]] = {}
    for key in payload.features:
        result = payload.flags.evaluate(key, attributes)
        value = result.value
        if isinstance(value, bool) or (isinstance(value, str) and value):
            flags[key] = (value, None)
        else:
            flags[key] = (result.on, value if result.on else None)
    return flags

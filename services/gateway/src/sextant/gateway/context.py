"""What a request handler may use: settings, the config state, the warehouse, the publisher.

One :class:`Gateway` is built by :func:`sextant.gateway.app.create_app` and reached from a
handler through the :data:`GatewayDep` dependency; nothing is global.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request

from sextant.core.config_plane import ConfigFollower, ConfigPublisher, ConfigState
from sextant.core.kafka import note_use
from sextant.core.logging import get_logger
from sextant.core.secrets import MissingSecretKey, SecretBox, UnreadableSecret, seal_secrets
from sextant.core.warehouse import Warehouse, connect
from sextant.gateway.audit import AuditLog
from sextant.gateway.cache import TimedCache
from sextant.gateway.login_throttle import LoginThrottle
from sextant.gateway.problems import ProblemError
from sextant.gateway.sessions import Signer
from sextant.gateway.settings import GatewaySettings
from sextant.gateway.sso import OpenIdClient
from sextant.schemas.config import ConfigDocument
from sextant.schemas.topics import Topic, topic_name

log = get_logger(__name__)


class Gateway:
    """The gateway's dependencies, created once per app.

    The warehouse and the config publisher are opened on first use, so the process starts
    (and ``/readyz`` can say what is missing) while a dependency is still down.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        follower: ConfigFollower,
        warehouse_factory: Callable[[str], Warehouse] = connect,
    ) -> None:
        self.settings = settings
        self.follower = follower
        self.state: ConfigState = follower.state
        self.secrets = SecretBox.from_setting(settings.secret_key)
        self.audit = AuditLog(settings)
        self.sessions = Signer(self.secrets, "session") if self.secrets else None
        """Signs people's session cookies; None without a master key (no sign-in then)."""
        self.sso = (
            OpenIdClient(settings, Signer(self.secrets, "sso"))
            if settings.oidc_issuer and self.secrets is not None
            else None
        )
        """Single sign-on, when an OpenID provider is configured (and sessions can be signed)."""
        self.login_throttle = LoginThrottle(
            settings.login_max_failures, settings.login_lockout_seconds
        )
        self._warehouse_factory = warehouse_factory
        self._warehouse: Warehouse | None = None
        self._publisher: ConfigPublisher | None = None
        # The admin API writes the config topic (its publisher is opened on first use).
        note_use(topic_name(Topic.CONFIG, settings.topic_prefix), "writes")
        # The admin API's splits and merges of persons write identity edges.
        note_use(topic_name(Topic.IDENTITIES, settings.topic_prefix), "writes")
        # A person's deletion status reads the processor's progress on it.
        note_use(topic_name(Topic.PERSON_DELETIONS, settings.topic_prefix), "reads")
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self.quantile_cache = TimedCache(settings.experiment_quantile_refresh_seconds)
        """Experiment quantile metrics: recomputed from the events table on a schedule."""
        self.state.subscribe(self._on_config_change)

    def warehouse(self) -> Warehouse:
        """The warehouse handle; a 503 problem while it cannot be opened."""
        with self._lock:
            if self._warehouse is None:
                try:
                    self._warehouse = self._warehouse_factory(self.settings.clickhouse_url)
                except Exception as error:
                    log.warning("warehouse unavailable", error=str(error))
                    raise ProblemError(
                        503, "warehouse-unavailable", "the warehouse cannot be reached now"
                    ) from error
            return self._warehouse

    def warehouse_ready(self) -> bool:
        try:
            return self.warehouse().ping()
        except ProblemError:
            return False

    def seal(self, document: ConfigDocument) -> ConfigDocument:
        """``document`` as it may be stored: every secret in it sealed under the master key.
        A 503 problem when there is a secret to seal and no key; a 422 one for a sealed
        value the key does not open."""
        try:
            return seal_secrets(document, self.secrets)
        except MissingSecretKey as error:
            log.error("a secret cannot be stored", reason=str(error))
            raise ProblemError(
                503,
                "secret-key-missing",
                "this gateway has no master key (SEXTANT_SECRET_KEY), so it cannot store "
                "secrets such as webhook signing secrets; its operator must set it",
            ) from error
        except UnreadableSecret as error:
            parameter = error.field or "body"
            raise ProblemError(
                422,
                "invalid-parameter",
                f"{parameter}: a sealed value that this deployment's master key does not "
                "open; send the secret in clear to replace it",
                parameter,
            ) from error

    def publish(self, documents: Iterable[ConfigDocument], deletes: Iterable[str] = ()) -> None:
        """Write documents and tombstones to the config topic and wait for the broker."""
        with self._lock:
            if self._publisher is None:
                try:
                    self._publisher = ConfigPublisher(self.settings)
                except Exception as error:
                    raise ProblemError(
                        503, "config-unavailable", "the config topic cannot be reached now"
                    ) from error
            publisher = self._publisher
        try:
            docs = list(documents)
            removed = list(deletes)
            before = {key: self.state.get(key) for key in [d.config_key() for d in docs] + removed}
            if docs:
                publisher.put(docs)
            for key in removed:
                publisher.delete(key)
        except Exception as error:
            log.warning("config write failed", error=str(error))
            raise ProblemError(
                503, "config-unavailable", "the config topic did not take the write; retry"
            ) from error
        after: dict[str, ConfigDocument | None] = {d.config_key(): d for d in docs}
        after |= dict.fromkeys(removed)
        self.audit.config_writes((key, before[key], doc) for key, doc in after.items())

    def now(self) -> datetime:
        return datetime.now(UTC)

    def _on_config_change(self, _key: str, _document: ConfigDocument | None) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_visible(self, expected: dict[str, ConfigDocument | None]) -> bool:
        """Wait (up to ``config_visibility_seconds``) until the followed state shows
        ``expected`` (key → document, or ``None`` for deleted); so a read after a write
        through this gateway sees the write."""

        def visible() -> bool:
            return all(self.state.get(key) == doc for key, doc in expected.items())

        with self._changed:
            return self._changed.wait_for(visible, timeout=self.settings.config_visibility_seconds)

    def close(self) -> None:
        with self._lock:
            if self._publisher is not None:
                self._publisher.close()
                self._publisher = None
            if self._warehouse is not None:
                self._warehouse.close()
                self._warehouse = None


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(_gateway)]

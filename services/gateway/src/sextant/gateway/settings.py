"""The gateway's one settings class: ``SEXTANT_<FIELD>`` environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr

from sextant.core.settings import ClickHouseSection, KafkaSection, SecretsSection, ServiceSection
from sextant.schemas.config import Identifier, Role


class GatewaySettings(KafkaSection, ClickHouseSection, ServiceSection, SecretsSection):
    """Where the gateway listens, and the limits that keep one request from starving others."""

    gateway_port: int = 8081
    query_timeout_seconds: float = Field(default=10.0, gt=0)
    """ClickHouse ``max_execution_time`` of every read query."""
    query_max_result_rows: int = Field(default=100_000, gt=0)
    """ClickHouse ``max_result_rows`` of every read query (overflow is an error, not a cut)."""
    max_series_buckets: int = Field(default=20_000, gt=0)
    """Time buckets a series, trend or retention request may ask for."""
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    """Request bodies larger than this are refused before they are parsed."""
    live_buffer_records: int = Field(default=20_000, gt=0)
    """Recent ``metric_points`` records kept in memory to replay to reconnecting streams."""
    live_buffer_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    """... and at most this many bytes of them."""
    live_heartbeat_seconds: float = Field(default=15.0, gt=0)
    config_visibility_seconds: float = Field(default=5.0, ge=0)
    """How long an admin write waits to see its own document come back from the topic."""
    experiment_alert_interval_seconds: float = Field(default=15.0, gt=0)
    """How often experiment guardrail and SRM rules are judged against live results."""
    ramp_interval_seconds: float = Field(default=15.0, gt=0)
    """How often rollout ramps are checked and raised to the step in force."""
    experiment_quantile_refresh_seconds: float = Field(default=300.0, gt=0)
    """How long an experiment's quantile metrics (computed from the events table, which has
    no sufficient statistics for them) are kept before they are computed again."""
    audit_failed_auth_threshold: int = Field(default=10, ge=1)
    """Unknown or revoked keys from one address within a minute that make an audit entry."""
    key_usage_resolution_seconds: float = Field(default=3600.0, gt=0)
    """A key's use is recorded (audit log, last-used time) at most once per this period."""
    audit_wait_seconds: float = Field(default=10.0, ge=0)
    """How long start-up waits to read the audit topic (first uses, last-used times)."""

    # --- People signing in (accounts, sessions, single sign-on) ---
    public_url: str | None = Field(default=None, pattern=r"^https?://[^/\s]+$")
    """The workspace's address as browsers reach it (``https://sextant.example.com``, no
    path): the origin cookie-authenticated writes must come from, the single sign-on
    callback's base, and, when it is ``https``, sessions' cookies are ``Secure``. Unset: the
    request's own scheme and host."""
    session_max_age_seconds: int = Field(default=12 * 3600, ge=60, le=30 * 86_400)
    """How long a sign-in lasts."""
    login_max_failures: int = Field(default=5, ge=1)
    """Failed sign-ins for one account from one address (within the lockout period) that
    lock that account out from that address."""
    login_lockout_seconds: float = Field(default=900.0, gt=0)
    """How long a lockout lasts, and the period failures are counted over."""
    oidc_issuer: str | None = Field(default=None, pattern=r"^https?://\S+$")
    """Single sign-on: the OpenID provider's issuer URL (its discovery document is at
    ``<issuer>/.well-known/openid-configuration``). Unset: no single sign-on."""
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr | None = None
    oidc_allowed_domains: list[str] = Field(default_factory=list)
    """Email domains whose people get an account at their first single sign-on (with
    ``oidc_default_roles``); others sign in only to an account that exists."""
    oidc_default_roles: dict[Identifier, Role] = Field(default_factory=dict)
    """Roles of an account created at its first single sign-on: ``{"shop": "viewer"}``."""

"""Config-plane documents: projects, keys, metrics, experiments, alert rules, tracking plans.

Each document is one record on the compacted ``config`` topic, keyed ``kind:project_id:id``;
a tombstone (null value) deletes it. Every part follows the topic into memory.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    model_validator,
)

from sextant.schemas.events import IpPolicy
from sextant.schemas.experiments import IDENTIFIER as IDENTIFIER
from sextant.schemas.experiments import ExperimentDefinition
from sextant.schemas.experiments import Identifier as Identifier
from sextant.schemas.experiments import Variant as Variant
from sextant.schemas.origins import check_pattern
from sextant.schemas.records import AlertState

PROPERTY_NAME = r"^[A-Za-z_$][A-Za-z0-9_$.\- ]{0,127}$"
PROPERTY_PATTERN = re.compile(PROPERTY_NAME)

PropertyName = Annotated[str, Field(pattern=PROPERTY_NAME)]
EventName = Annotated[str, Field(min_length=1, max_length=200)]


class ConfigKind(StrEnum):
    PROJECT = "project"
    API_KEY = "api_key"
    METRIC = "metric"
    EXPERIMENT = "experiment"
    ALERT_RULE = "alert_rule"
    TRACKING_PLAN = "tracking_plan"
    ALERT_MUTE = "alert_mute"
    ALERT_ACK = "alert_ack"


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Identifier
    project_id: Identifier

    def config_key(self) -> str:
        kind: str = getattr(self, "kind")  # noqa: B009 - every subclass defines a Literal kind
        return f"{kind}:{self.project_id}:{self.id}"


OriginPattern = Annotated[str, Field(max_length=300), AfterValidator(check_pattern)]


class Project(_Document):
    kind: Literal["project"] = "project"
    name: str = Field(min_length=1, max_length=200)
    allowed_lateness_seconds: int = Field(default=300, ge=0, le=86_400)
    ip_policy: IpPolicy = IpPolicy.KEEP
    rate_limit_per_second: int = Field(default=10_000, gt=0)
    """Events per second per write key."""
    rate_limit_per_ip_per_second: int | None = Field(default=None, gt=0)
    """Events per second per client address (``None``: no limit per address). A public write
    key in a page is protected by the origin list and by this limit."""
    allowed_origins: list[OriginPattern] = Field(default_factory=list, max_length=100)
    """Web origins whose pages may send events and read assignments (CORS): exact
    (``https://app.example.com``), subdomains (``https://*.example.com``), any port
    (``http://localhost:*``) or ``*``. Requests without an ``Origin`` (servers, apps) are not
    concerned; a browser request from an origin not listed is refused."""

    @model_validator(mode="after")
    def _project_id_is_id(self) -> Project:
        if self.project_id != self.id:
            raise ValueError("a project's project_id must equal its id")
        return self


class KeyKind(StrEnum):
    WRITE = "write"
    READ = "read"
    ADMIN = "admin"


def hash_key(secret: str) -> str:
    """Keys are stored and compared only as SHA-256 hex digests."""
    return hashlib.sha256(secret.encode()).hexdigest()


ALL_PROJECTS = "*"
"""The ``project_id`` of admin keys: they manage every project."""


class ApiKey(_Document):
    kind: Literal["api_key"] = "api_key"
    project_id: Annotated[str, Field(pattern=rf"^(\*|{IDENTIFIER[1:-1]})$")]
    key_kind: KeyKind
    key_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    name: str = ""
    revoked: bool = False
    created_at: datetime | None = None

    @model_validator(mode="after")
    def _admin_keys_span_projects(self) -> ApiKey:
        if (self.key_kind is KeyKind.ADMIN) != (self.project_id == ALL_PROJECTS):
            raise ValueError("admin keys, and only they, have project_id '*'")
        return self


class MetricKind(StrEnum):
    COUNT = "count"
    UNIQUE_USERS = "unique_users"
    SUM = "sum"
    MEAN = "mean"
    PERCENTILES = "percentiles"
    CONVERSION = "conversion"


class FilterOp(StrEnum):
    EQ = "eq"
    NEQ = "neq"
    IN = "in"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    EXISTS = "exists"


class PropertyFilter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    property: PropertyName
    op: FilterOp
    value: Any = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> PropertyFilter:
        if self.op is FilterOp.IN and not isinstance(self.value, list):
            raise ValueError("'in' needs a list value")
        numeric = (FilterOp.GT, FilterOp.GTE, FilterOp.LT, FilterOp.LTE)
        if self.op in numeric and (
            isinstance(self.value, bool) or not isinstance(self.value, int | float)
        ):
            raise ValueError(f"'{self.op.value}' needs a numeric value")
        return self


class MetricDefinition(_Document):
    kind: Literal["metric"] = "metric"
    name: str = ""
    metric_kind: MetricKind
    event: EventName
    property: PropertyName | None = None
    conversion_event: EventName | None = None
    conversion_window_seconds: int = Field(default=86_400, gt=0)
    filters: list[PropertyFilter] = Field(default_factory=list)
    breakdown: PropertyName | None = None
    breakdown_limit: int = Field(default=10, ge=1, le=100)

    @model_validator(mode="after")
    def _fields_for_kind(self) -> MetricDefinition:
        needs_property = (MetricKind.SUM, MetricKind.MEAN, MetricKind.PERCENTILES)
        if self.metric_kind in needs_property and self.property is None:
            raise ValueError(f"a {self.metric_kind.value} metric needs 'property'")
        if self.metric_kind is MetricKind.CONVERSION and self.conversion_event is None:
            raise ValueError("a conversion metric needs 'conversion_event'")
        return self


class Experiment(ExperimentDefinition, _Document):
    """An experiment: the assignment fields the SDKs read, and how the server judges it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["experiment"] = "experiment"
    primary_metric: Identifier | None = None
    guardrail_metrics: list[Identifier] = Field(default_factory=list)
    correction: Literal["holm", "benjamini_hochberg"] = "holm"
    min_sample_per_variant: int = Field(default=100, ge=1)


class AlertRuleKind(StrEnum):
    THRESHOLD = "threshold"
    RELATIVE_CHANGE = "relative_change"
    ANOMALY = "anomaly"
    EXPERIMENT_GUARDRAIL = "experiment_guardrail"
    SRM = "srm"


METRIC_RULE_KINDS = frozenset(
    {AlertRuleKind.THRESHOLD, AlertRuleKind.RELATIVE_CHANGE, AlertRuleKind.ANOMALY}
)
"""Rules on a metric's series: the processor evaluates them as windows close."""
EXPERIMENT_RULE_KINDS = frozenset({AlertRuleKind.EXPERIMENT_GUARDRAIL, AlertRuleKind.SRM})
"""Rules on an experiment's results: the gateway evaluates them on a schedule."""


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


SEALED_PREFIX = "sealed:v1:"
"""How a sealed value starts: ``sealed:v1:<Fernet token>`` (``sextant.core.secrets``)."""


class Sealed:
    """Marks a string field that is stored sealed: encrypted under the master key
    (``SEXTANT_SECRET_KEY``) wherever it is kept (the config topic, tables).

    Users give the value in clear; the writers (the admin API, ``sextant config apply``) seal
    it before it is published, and only the part that uses it (the notifier, to sign) opens
    it. The model accepts both forms, so that a value can be validated before it is sealed;
    ``sextant secrets rotate`` seals any clear value an older writer left on the topic.
    """


def _clear_secret_length(value: str) -> str:
    if not value.startswith(SEALED_PREFIX) and len(value) > 200:
        raise ValueError("a secret has at most 200 characters")
    return value


SealedSecret = Annotated[
    str,
    Sealed(),
    Field(
        max_length=1000,
        description="Given in clear (at most 200 characters); stored sealed under the master "
        "key (`sealed:v1:<Fernet token>`), never in clear",
    ),
    AfterValidator(_clear_secret_length),
]
"""A secret of at most 200 characters in clear, or its sealed form."""


class WebhookTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Annotated[str, Field(pattern=r"^https?://[^\s@]+$", max_length=2000)]
    secret: SealedSecret = ""
    """Signs each delivery (HMAC-SHA256); stored sealed, never in clear."""
    format: Literal["json", "slack"] = "json"


_METRIC_RULES = (AlertRuleKind.THRESHOLD, AlertRuleKind.RELATIVE_CHANGE, AlertRuleKind.ANOMALY)


class AlertRule(_Document):
    """When to tell a team that an outcome regressed, and whom to tell.

    Metric rules (``threshold``, ``relative_change``, ``anomaly``) are judged on the metric's
    value over each closed event-time window of ``evaluation_window_minutes``; experiment rules
    (``experiment_guardrail``, ``srm``) on the experiment's results, on a schedule. A rule
    fires after ``pending_windows`` consecutive breaching windows and resolves after
    ``recovery_windows`` consecutive windows that meet the recovery condition (the
    ``recovery_*`` fields; by default the breach condition no longer holds). Transitions whose
    new state is in ``notify_on`` are delivered to ``targets``.
    """

    kind: Literal["alert_rule"] = "alert_rule"
    name: str = ""
    rule_kind: AlertRuleKind
    metric: Identifier | None = None
    experiment: Identifier | None = None
    direction: Literal["above", "below", "either"] = "above"
    threshold: float | None = None
    baseline: Literal["day", "week", "trailing"] = "day"
    change_percent: float | None = None
    k_sigma: float = Field(default=3.0, gt=0)
    ewma_alpha: float = Field(default=0.1, gt=0, le=1)
    min_volume: int = Field(default=0, ge=0)
    min_effect: float = Field(default=0.0, ge=0)
    evaluation_window_minutes: int = Field(default=1, ge=1, le=1440)
    pending_windows: int = Field(default=1, ge=1)
    recovery_windows: int = Field(default=1, ge=1)
    severity: Severity = Severity.WARNING
    targets: list[WebhookTarget] = Field(default_factory=list)
    breakdown: str | None = Field(default=None, max_length=200)
    """Judge one breakdown value of the metric; ``None`` judges the metric's total."""
    quantile: float = Field(default=0.5, gt=0, lt=1)
    """The quantile judged for a ``percentiles`` metric."""
    recovery_threshold: float | None = None
    """``threshold``: resolved only at or beyond this value (hysteresis); default ``threshold``."""
    recovery_percent: float | None = Field(default=None, ge=0)
    """``relative_change``: resolved only within this change; default ``change_percent``."""
    recovery_k_sigma: float | None = Field(default=None, gt=0)
    """``anomaly``: resolved only within this many deviations; default ``k_sigma``."""
    baseline_windows: int = Field(default=30, ge=1, le=10_080)
    """Windows of the ``trailing`` baseline, and of the ``anomaly`` warm-up."""
    no_data_windows: int = Field(default=5, ge=1)
    """Consecutive windows without a value before the rule reports ``no_data``."""
    notify_on: list[AlertState] = Field(
        default_factory=lambda: [AlertState.FIRING, AlertState.RESOLVED]
    )
    """The states whose transitions are delivered to the targets."""

    @model_validator(mode="after")
    def _fields_for_kind(self) -> AlertRule:
        if self.rule_kind in _METRIC_RULES and self.metric is None:
            raise ValueError(f"a {self.rule_kind.value} rule needs 'metric'")
        if self.rule_kind not in _METRIC_RULES and self.experiment is None:
            raise ValueError(f"a {self.rule_kind.value} rule needs 'experiment'")
        if self.rule_kind is AlertRuleKind.THRESHOLD:
            self._check_threshold()
        if self.rule_kind is AlertRuleKind.RELATIVE_CHANGE:
            if self.change_percent is None or self.change_percent <= 0:
                raise ValueError("a relative_change rule needs a positive 'change_percent'")
            if self.recovery_percent is not None and self.recovery_percent > self.change_percent:
                raise ValueError("'recovery_percent' must not exceed 'change_percent'")
        if self.recovery_k_sigma is not None and self.recovery_k_sigma > self.k_sigma:
            raise ValueError("'recovery_k_sigma' must not exceed 'k_sigma'")
        return self

    def _check_threshold(self) -> None:
        if self.threshold is None:
            raise ValueError("a threshold rule needs 'threshold'")
        if self.direction == "either":
            raise ValueError("a threshold rule's direction is 'above' or 'below'")
        recovery = self.recovery_threshold
        if recovery is not None and (
            (self.direction == "above" and recovery > self.threshold)
            or (self.direction == "below" and recovery < self.threshold)
        ):
            raise ValueError("'recovery_threshold' must lie on the healthy side of 'threshold'")


class AlertMute(_Document):
    """Silences the notifications of one rule until ``until``; ``id`` is the rule's id.

    The rule is still evaluated and its transitions stored; only delivery is skipped. An
    expired mute has no effect; deleting it (a tombstone) unmutes at once.
    """

    kind: Literal["alert_mute"] = "alert_mute"
    until: AwareDatetime
    reason: str = Field(default="", max_length=500)
    created_by: str = Field(default="", max_length=200)
    created_at: AwareDatetime | None = None


class AlertAck(_Document):
    """Someone is on it: acknowledges one episode of a rule; ``id`` is the rule's id.

    One document per rule: acknowledging a later episode replaces it, so the topic keeps one
    acknowledgement per rule however many episodes there were.
    """

    kind: Literal["alert_ack"] = "alert_ack"
    episode_id: str = Field(min_length=1, max_length=100)
    note: str = Field(default="", max_length=500)
    acknowledged_by: str = Field(default="", max_length=200)
    acknowledged_at: AwareDatetime | None = None


class TrackingPlan(_Document):
    kind: Literal["tracking_plan"] = "tracking_plan"
    mode: Literal["enforce", "flag"] = "enforce"
    events: dict[EventName, dict[str, Any]] = Field(default_factory=dict)


ConfigDocument = Annotated[
    Project
    | ApiKey
    | MetricDefinition
    | Experiment
    | AlertRule
    | TrackingPlan
    | AlertMute
    | AlertAck,
    Field(discriminator="kind"),
]
CONFIG_DOCUMENT: TypeAdapter[ConfigDocument] = TypeAdapter(ConfigDocument)


def parse_config_key(key: str) -> tuple[ConfigKind, str, str]:
    """Split a ``kind:project_id:id`` key; raises ``ValueError`` for anything else."""
    kind, project_id, doc_id = key.split(":", 2)
    return ConfigKind(kind), project_id, doc_id

"""Config-plane documents: projects, keys, accounts, metrics, experiments, alert rules,
tracking plans, outcomes and surveys.

Each document is one record on the compacted ``config`` topic, keyed ``kind:project_id:id``;
a tombstone (null value) deletes it. Every part follows the topic into memory.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    model_serializer,
    model_validator,
)

from sextant.schemas.events import IpPolicy
from sextant.schemas.experiments import IDENTIFIER as IDENTIFIER
from sextant.schemas.experiments import ExperimentDefinition
from sextant.schemas.experiments import Identifier as Identifier
from sextant.schemas.experiments import NamespaceRange as NamespaceRange
from sextant.schemas.experiments import Variant as Variant
from sextant.schemas.origins import check_pattern
from sextant.schemas.privacy import PiiRule
from sextant.schemas.records import AlertState
from sextant.schemas.statistics import EffectPrior

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
    FEATURE = "feature"
    FEATURE_REVISION = "feature_revision"
    OUTCOME = "outcome"
    SURVEY = "survey"
    PERSON_DELETION = "person_deletion"
    ACCOUNT = "account"


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
    identity_junk_ids: list[str] = Field(default_factory=list, max_length=1_000)
    """Ids this project's clients send when they have none, never merged into a person (beside
    the built-in ``sextant.schemas.identity.JUNK_IDS``); compared trimmed and case-folded."""
    flags_environment: Identifier = "production"
    """The environment whose features PostHog's ``/flags`` answers (write keys name no
    environment; client keys do)."""
    pii: list[PiiRule] = Field(default_factory=list, max_length=200)
    """Properties (and traits) dropped, hashed or truncated at ingest, before Kafka."""
    raw_event_retention_days: int | None = Field(default=None, ge=1, le=36_500)
    """Raw events (and exposures) older than this are deleted; ``None``: kept forever.
    Metric windows and experiment statistics are kept regardless."""

    @model_validator(mode="after")
    def _project_id_is_id(self) -> Project:
        if self.project_id != self.id:
            raise ValueError("a project's project_id must equal its id")
        return self


class KeyKind(StrEnum):
    WRITE = "write"
    READ = "read"
    """Private, per project: what it may do there is its ``role`` (``viewer`` by default)."""
    ADMIN = "admin"
    CLIENT = "client"
    """Public, per project and environment: reads that environment's features payload
    (``/api/features/{clientKey}``, ``/sub/{clientKey}``) and nothing else."""


def hash_key(secret: str) -> str:
    """Keys are stored and compared only as SHA-256 hex digests."""
    return hashlib.sha256(secret.encode()).hexdigest()


class Role(StrEnum):
    """What a private project key may do in its project; each role includes the ones below."""

    VIEWER = "viewer"
    """The read API and the workspace."""
    EDITOR = "editor"
    """... and the project's config documents (metrics, experiments, features, rules)."""
    OWNER = "owner"
    """... and the project's settings and keys."""


ROLE_RANK = {Role.VIEWER: 1, Role.EDITOR: 2, Role.OWNER: 3}


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
    environment: Identifier | None = None
    """The environment whose features a client key reads (client keys only)."""
    payload_key: SealedSecret = ""
    """A client key's payload encryption key (AES-128, base64), when its payload is
    encrypted as GrowthBook encrypts it; stored sealed under the master key."""
    role: Role | None = None
    """A read key's role in its project (``None``: ``viewer``); other kinds have none."""
    expires_at: datetime | None = None
    """When the key stops working (set on the old key of a rotation: the overlap's end)."""

    @model_validator(mode="after")
    def _admin_keys_span_projects(self) -> ApiKey:
        if (self.key_kind is KeyKind.ADMIN) != (self.project_id == ALL_PROJECTS):
            raise ValueError("admin keys, and only they, have project_id '*'")
        if (self.key_kind is KeyKind.CLIENT) != (self.environment is not None):
            raise ValueError("client keys, and only they, name an environment")
        if self.payload_key and self.key_kind is not KeyKind.CLIENT:
            raise ValueError("only client keys have a payload_key")
        if self.role is not None and self.key_kind is not KeyKind.READ:
            raise ValueError("only read keys have a role")
        return self

    @property
    def project_role(self) -> Role | None:
        """The key's role in its project: read keys only (admin keys span every project)."""
        if self.key_kind is not KeyKind.READ:
            return None
        return self.role or Role.VIEWER

    def usable_at(self, now: datetime) -> bool:
        """Neither revoked nor past its expiry."""
        return not self.revoked and (self.expires_at is None or now < self.expires_at)


class MetricKind(StrEnum):
    COUNT = "count"
    UNIQUE_USERS = "unique_users"
    SUM = "sum"
    MEAN = "mean"
    PERCENTILES = "percentiles"
    CONVERSION = "conversion"
    NPS = "nps"
    """Net Promoter Score of a 0–10 ``property``: % promoters (9–10) − % detractors (0–6),
    from -100 to 100."""
    CSAT = "csat"
    """Customer satisfaction: the share of responses whose ``property`` is at least
    ``satisfied_from`` (4 on the usual 1–5 scale)."""


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
    # How experiments judge the metric (the live windows do not read these).
    denominator_metric: Identifier | None = None
    """Makes a ratio metric of a ``count``, ``sum`` or ``unique_users`` metric: its per-unit
    value over the per-unit value of this other metric (of one of those kinds), e.g. revenue
    per order; experiments compare Σ numerator / Σ denominator with the delta method."""
    quantile: float = Field(default=0.5, gt=0, lt=1)
    """The quantile experiments compare for a ``percentiles`` metric (0.9 for p90)."""
    quantile_scope: Literal["event", "unit"] = "event"
    """``event``: the quantile of the property over events (variance clustered by unit);
    ``unit``: over the units' totals of the property."""
    higher_is_better: bool = True
    """Which direction of the metric is a win (verdicts, chance to win, risk)."""
    prior: EffectPrior | None = None
    """A proper Gaussian prior on the relative lift for the Bayesian read-out; ``None``: flat."""
    satisfied_from: float = Field(default=4.0)
    """``csat`` metrics: the lowest score that counts as satisfied."""
    unit: str = Field(default="", max_length=16, pattern=r"^([A-Z]{3}|seconds|ms|percent|)$")
    """How the workspace shows the values: a currency code (``EUR``), ``seconds``, ``ms``,
    ``percent``; empty: a plain number (conversions and CSAT are shown as percentages)."""

    @model_validator(mode="after")
    def _fields_for_kind(self) -> MetricDefinition:
        needs_property = (
            MetricKind.SUM,
            MetricKind.MEAN,
            MetricKind.PERCENTILES,
            MetricKind.NPS,
            MetricKind.CSAT,
        )
        if self.metric_kind in needs_property and self.property is None:
            raise ValueError(f"a {self.metric_kind.value} metric needs 'property'")
        if self.metric_kind is MetricKind.CONVERSION and self.conversion_event is None:
            raise ValueError("a conversion metric needs 'conversion_event'")
        if self.denominator_metric is not None:
            if self.metric_kind not in RATIO_PARTS:
                raise ValueError("only a count, sum or unique_users metric has a denominator")
            if self.denominator_metric == self.id:
                raise ValueError("a metric cannot be its own denominator")
        return self


RATIO_PARTS = (MetricKind.COUNT, MetricKind.SUM, MetricKind.UNIQUE_USERS)
"""The kinds that may be a ratio metric's numerator or denominator (one value per unit)."""
SURVEY_KINDS = (MetricKind.NPS, MetricKind.CSAT)
"""The kinds whose windows hold each response's value (``sextant.schemas.metric_values``)
rather than the property itself."""


class Experiment(ExperimentDefinition, _Document):
    """An experiment: the assignment fields the SDKs read, and how the server judges it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["experiment"] = "experiment"
    primary_metric: Identifier | None = None
    guardrail_metrics: list[Identifier] = Field(default_factory=list)
    correction: Literal["holm", "benjamini_hochberg"] = "holm"
    min_sample_per_variant: int = Field(default=100, ge=1)
    holdout: bool = False
    """The project's global holdout: its first variant is the held-out group (its weight is
    the share held out), which sees every feature created from ``start`` on at its default
    value; the second is everyone else. Its results are those of any experiment."""

    cuped_lookback_days: int = Field(default=14, ge=0, le=365)
    """CUPED: each unit's same metric over this many days before its first exposure is the
    covariate of a regression adjustment; 0 turns the adjustment off."""
    minimum_detectable_effect: float = Field(default=0.05, gt=0, le=10)
    """The smallest relative lift of the primary metric worth detecting (0.05: 5 %); the
    workspace says how long the experiment needs, at its traffic, to detect it."""
    power: float = Field(default=0.8, gt=0, lt=1)
    """The chance of detecting a true lift of ``minimum_detectable_effect``."""

    @model_validator(mode="after")
    def _holdout_shape(self) -> Experiment:
        if self.holdout and (len(self.variants) != 2 or self.start is None):
            raise ValueError("a holdout has two variants (held out, general) and a start")
        return self


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


# --- Outcomes and surveys -----------------------------------------------------------------


class OutcomeDirection(StrEnum):
    INCREASE = "increase"
    DECREASE = "decrease"


class Outcome(_Document):
    """What a team means to achieve: a metric moved in a direction to a target by a date.

    The workspace's outcome board shows the metric's daily value since ``start_date``, the
    progress from ``baseline`` (when omitted, the mean of the first week's daily values) to
    ``target``, a
    forecast for ``target_date``, and the experiments (and their features) whose primary or
    secondary metric is ``metric``.
    """

    kind: Literal["outcome"] = "outcome"
    name: str = Field(min_length=1, max_length=200)
    metric: Identifier
    direction: OutcomeDirection = OutcomeDirection.INCREASE
    target: float
    start_date: date
    target_date: date
    baseline: float | None = None
    owner: str = Field(default="", max_length=200)
    why: str = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def _dates_ordered(self) -> Outcome:
        if self.target_date <= self.start_date:
            raise ValueError("'target_date' must come after 'start_date'")
        return self


class SurveyKind(StrEnum):
    NPS = "nps"
    CSAT = "csat"


SURVEY_EVENT = "Survey Responded"
"""The event a survey answer is sent as: ``properties.survey`` (the survey's id),
``properties.score`` (NPS 0–10, CSAT 1–5 by default) and ``properties.comment`` (optional
text). Both SDKs send it with one call (``survey_response`` / ``surveyResponse``)."""


class Survey(_Document):
    """A question asked of customers; answers are ``Survey Responded`` events whose
    ``survey`` property is this document's id."""

    kind: Literal["survey"] = "survey"
    name: str = Field(default="", max_length=200)
    survey_kind: SurveyKind
    question: str = Field(default="", max_length=500)
    scale_min: int = 0
    scale_max: int = 10
    satisfied_from: int = 4
    """CSAT: the lowest score counted as satisfied."""

    @model_validator(mode="after")
    def _scale(self) -> Survey:
        if self.scale_min >= self.scale_max:
            raise ValueError("'scale_min' must be below 'scale_max'")
        if self.survey_kind is SurveyKind.NPS and (self.scale_min, self.scale_max) != (0, 10):
            raise ValueError("an NPS survey is scored from 0 to 10")
        if self.survey_kind is SurveyKind.CSAT and not (
            self.scale_min < self.satisfied_from <= self.scale_max
        ):
            raise ValueError("'satisfied_from' must lie within the scale")
        return self


# --- Features -----------------------------------------------------------------------------

FeatureValueType = Literal["boolean", "string", "number", "json"]
FEATURE_REVISION_ID = rf"^{IDENTIFIER[1:-1]}@[0-9]{{1,9}}$"


def _check_value(value_type: str, value: Any, where: str) -> None:
    fits = {
        "boolean": isinstance(value, bool),
        "string": isinstance(value, str),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "json": True,
    }[value_type]
    if not fits:
        raise ValueError(f"{where} must be a {value_type} value")


class RampStep(BaseModel):
    """From ``at`` on, the rule covers ``coverage`` of the units (while its guardrails hold)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: AwareDatetime
    coverage: float = Field(ge=0, le=1)


class _FeatureRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str

    id: Identifier
    description: str = Field(default="", max_length=500)
    enabled: bool = True
    condition: dict[str, Any] | None = None
    """Which units the rule applies to: GrowthBook's condition language over the attributes
    (``{"country": {"$in": ["FR"]}, "app_version": {"$vgte": "2.1.0"}}``)."""
    stopped_reason: str = Field(default="", max_length=1000)
    """Why Sextant switched the rule off itself (a guardrail fired); empty otherwise."""

    @model_serializer(mode="wrap")
    def _tagged(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The rule's ``type`` is written even when defaults are left out (as the config
        topic writes documents): readers tell the kinds of rule apart by it."""
        data: dict[str, Any] = handler(self)
        return {"type": self.type, **data}


class ForceRule(_FeatureRule):
    """Units matching ``condition`` get ``value``."""

    type: Literal["force"] = "force"
    value: Any


class RolloutRule(_FeatureRule):
    """``coverage`` of the units matching ``condition`` get ``value``, chosen by hashing
    ``hash_attribute`` with the rule's own seed (GrowthBook's hash version 2), so raising the
    coverage keeps every unit already in. ``ramp`` raises the coverage on a schedule."""

    type: Literal["rollout"] = "rollout"
    value: Any
    coverage: float = Field(ge=0, le=1)
    hash_attribute: str = Field(default="id", min_length=1, max_length=100)
    seed: str | None = Field(default=None, max_length=200)
    """Default ``<feature>:<rule id>``."""
    ramp: list[RampStep] = Field(default_factory=list, max_length=100)


class ExperimentRule(_FeatureRule):
    """Units get the value of their variant in ``experiment`` (``values`` by variant id;
    a variant without one gets the default). ``coverage`` overrides the experiment's (a ramp
    raises it); ``auto_stop`` lets Sextant switch the rule off when one of the experiment's
    guardrail or sample-ratio alert rules fires."""

    type: Literal["experiment"] = "experiment"
    experiment: Identifier
    values: dict[str, Any] = Field(default_factory=dict)
    coverage: float | None = Field(default=None, ge=0, le=1)
    ramp: list[RampStep] = Field(default_factory=list, max_length=100)
    auto_stop: bool = True


FeatureRule = Annotated[ForceRule | RolloutRule | ExperimentRule, Field(discriminator="type")]


class FeatureEnvironment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    """Off: every unit gets the default value in this environment."""
    rules: list[FeatureRule] = Field(default_factory=list, max_length=200)

    @model_validator(mode="after")
    def _unique_rule_ids(self) -> FeatureEnvironment:
        ids = [r.id for r in self.rules]
        if len(set(ids)) != len(ids):
            raise ValueError("rule ids must be unique within an environment")
        for rule in self.rules:
            steps = getattr(rule, "ramp", [])
            if any(b.at <= a.at for a, b in itertools.pairwise(steps)):
                raise ValueError(f"rule {rule.id!r}: ramp steps must be in time order")
        return self


class Feature(_Document):
    """A feature flag: its type, default value, and per environment an on/off switch and
    ordered rules (the first that applies to a unit gives its value).

    ``version`` counts the changes; every change also writes a :class:`FeatureRevision`
    (who, when, what changed), from which a version can be restored. Writers set
    ``version``, ``updated_at`` and ``updated_by``; what a client sends for them is replaced.
    """

    kind: Literal["feature"] = "feature"
    description: str = Field(default="", max_length=2000)
    value_type: FeatureValueType = "boolean"
    default_value: Any = False
    environments: dict[Identifier, FeatureEnvironment] = Field(default_factory=dict)
    version: int = Field(default=0, ge=0)
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None
    updated_by: str = Field(default="", max_length=200)
    comment: str = Field(default="", max_length=1000)

    @model_validator(mode="after")
    def _values_fit_type(self) -> Feature:
        _check_value(self.value_type, self.default_value, "default_value")
        for env, environment in self.environments.items():
            for rule in environment.rules:
                where = f"environments.{env}.rules.{rule.id}"
                if isinstance(rule, ForceRule | RolloutRule):
                    _check_value(self.value_type, rule.value, f"{where}.value")
                else:
                    for variant, value in rule.values.items():
                        _check_value(self.value_type, value, f"{where}.values.{variant}")
        return self

    def content(self) -> dict[str, Any]:
        """What the feature says, without its bookkeeping (version, times, author)."""
        return self.model_dump(
            mode="json",
            exclude={"version", "created_at", "updated_at", "updated_by", "comment"},
        )


class FeatureRevision(_Document):
    """One version of a feature as it was written: ``id`` is ``<feature>@<version>``."""

    kind: Literal["feature_revision"] = "feature_revision"
    id: Annotated[str, Field(pattern=FEATURE_REVISION_ID)]
    feature: Identifier
    version: int = Field(ge=1)
    document: Feature | None
    """The feature as of this version; ``None``: the feature was deleted."""
    changes: list[str] = Field(default_factory=list)
    at: AwareDatetime
    by: str = Field(default="", max_length=200)
    comment: str = Field(default="", max_length=1000)


def person_hash(project_id: str, distinct_id: str) -> str:
    """How a deleted person's id is named where it must be kept (requests, suppression):
    SHA-256 of ``project_id:distinct_id``, which the warehouse computes too."""
    return hashlib.sha256(f"{project_id}:{distinct_id}".encode()).hexdigest()


class PersonDeletion(_Document):
    """A request to forget a person: every row under their ids is deleted from the warehouse
    (by the sink, until none is left), and events under those ids are dropped at ingest until
    ``suppress_until``. Ids are kept only as :func:`person_hash` digests."""

    kind: Literal["person_deletion"] = "person_deletion"
    id_hashes: list[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = Field(
        min_length=1, max_length=1000
    )
    requested_at: AwareDatetime
    suppress_until: AwareDatetime
    requested_by: str = Field(default="", max_length=300)


EMAIL = r"^[^@\s]{1,64}@[^@\s]{1,255}$"


def _lower_email(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


Email = Annotated[str, BeforeValidator(_lower_email), Field(pattern=EMAIL, max_length=320)]
"""An email address, compared case-insensitively (stored lower-case)."""


class Account(_Document):
    """A person who signs in to the workspace: by password, or by single sign-on.

    Accounts belong to the organisation (``project_id`` ``*``). A person has a role in each
    project listed in ``roles`` and none elsewhere; an organisation admin also does what the
    admin key does (every project's config, the projects, accounts). Sessions carry
    ``session_generation``: raising it (sign-out everywhere) or disabling the account ends
    every session on every gateway, as each follows this document.
    """

    kind: Literal["account"] = "account"
    project_id: Literal["*"] = "*"
    email: Email
    display_name: str = Field(default="", max_length=200)
    password_hash: str = Field(default="", max_length=500)
    """An argon2 hash (PHC string); empty: no password, single sign-on only. Never shown."""
    roles: dict[Identifier, Role] = Field(default_factory=dict, max_length=1000)
    org_admin: bool = False
    disabled: bool = False
    session_generation: int = Field(default=0, ge=0)
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None

    def redacted(self) -> dict[str, Any]:
        """The account as logs and the audit log may show it: no password hash, only
        whether one is set."""
        shown = self.model_dump(mode="json", exclude={"password_hash"})
        return shown | {"password_set": bool(self.password_hash)}


ConfigDocument = Annotated[
    Project
    | ApiKey
    | MetricDefinition
    | Experiment
    | AlertRule
    | TrackingPlan
    | AlertMute
    | AlertAck
    | Feature
    | FeatureRevision
    | Outcome
    | Survey
    | PersonDeletion
    | Account,
    Field(discriminator="kind"),
]
CONFIG_DOCUMENT: TypeAdapter[ConfigDocument] = TypeAdapter(ConfigDocument)


def parse_config_key(key: str) -> tuple[ConfigKind, str, str]:
    """Split a ``kind:project_id:id`` key; raises ``ValueError`` for anything else."""
    kind, project_id, doc_id = key.split(":", 2)
    return ConfigKind(kind), project_id, doc_id

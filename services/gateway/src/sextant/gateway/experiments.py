"""Experiment results, computed in the warehouse when asked.

Units are the experiment's first exposures (``exposures_first``): each unit's earliest
exposure and its variation; a unit exposed to more than one variation is counted and left
out of the analysis. The warehouse joins every unit to its events *after its first exposure*
(inside the experiment's start/stop) and, for CUPED, to its events in the look-back window
*before* it, and reduces each variant to the sufficient statistics of
:class:`sextant.schemas.statistics.SufficientStatistics` per metric;
:mod:`sextant.gateway.stats` and :mod:`sextant.gateway.estimators` turn those into lifts,
intervals, p-values, Bayesian read-outs, the sample-ratio check and verdicts. Quantile metrics
have no sufficient statistics: their quantiles are computed from the events table by a query
of their own, kept for ``experiment_quantile_refresh_seconds`` (the response says when).

How each kind of metric is measured per unit (``x`` the numerator, ``y`` the denominator; the
same over the look-back window gives the CUPED covariates ``x_pre`` and ``y_pre``):

=======================  ============================================  ==================
metric                   per unit                                      analysed as
=======================  ============================================  ==================
``count``                x = matching events                           mean per unit
``unique_users``         x = 1 if the unit had a matching event        proportion
``sum``                  x = sum of the property                       mean per unit
``mean``                 x = sum of the property, y = events with it   ratio Σx / Σy
``conversion``           y = did the event, x = converted in window    ratio Σx / Σy
``nps``, ``csat``        x = sum of the responses' values (100 for a   ratio Σx / Σy
                         promoter, -100 for a detractor; 1 if
                         satisfied), y = responses
``denominator_metric``   x = this metric, y = the denominator metric   ratio Σx / Σy
``percentiles``          the property's values (events or unit sums)   quantile
=======================  ============================================  ==================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from scipy import special

from sextant.gateway import estimators, stats
from sextant.gateway.context import Gateway
from sextant.gateway.persons import person_events, with_person
from sextant.gateway.sql import (
    DATETIME,
    EARLIEST,
    FINAL_PER_PARTITION,
    LATEST,
    Params,
    filters_sql,
    property_number,
    run_query,
    utc,
)
from sextant.schemas.config import RATIO_PARTS as _RATIO_PARTS
from sextant.schemas.config import SURVEY_KINDS, Experiment, MetricDefinition, MetricKind
from sextant.schemas.experiment_stream import statistics_fingerprint, streamed_metrics
from sextant.schemas.metric_values import response_value_sql
from sextant.schemas.statistics import (
    MOMENT_FIELDS,
    STATISTICS_COLUMNS,
    EffectPrior,
    ExperimentMetricStatistics,
    SufficientStatistics,
)

ALPHA = 0.05
METHODS_DOCUMENT = "docs/experiment-statistics.md"
_UNIT_COLUMNS = {"userId": "user_id", "anonymousId": "anonymous_id"}
_RATIO_KINDS = (MetricKind.MEAN, MetricKind.CONVERSION, *SURVEY_KINDS)
_CORRECTIONS: dict[str, stats.Correction] = {"holm": "holm", "benjamini_hochberg": "bh"}
AnalysedAs = Literal["mean", "proportion", "ratio", "quantile"]
Source = Literal["stream", "warehouse"]


# --- Response -------------------------------------------------------------------------------


class IntervalOut(BaseModel):
    low: float | None
    high: float | None


class EstimateOut(BaseModel):
    estimate: float | None
    se: float | None = Field(default=None, description="Standard error of the estimate")
    ci: IntervalOut = Field(description="95 % confidence interval (fixed horizon)")
    p_value: float | None


class RiskOut(BaseModel):
    treatment: float | None = Field(description="Expected loss of shipping the treatment")
    control: float | None = Field(description="Expected loss of keeping the control")


class BayesianOut(BaseModel):
    expected: float | None = Field(description="Posterior mean of the lift")
    credible_interval: IntervalOut = Field(description="95 % equal-tailed credible interval")
    chance_to_win: float | None = Field(
        description="Posterior probability that the treatment is better"
    )
    risk: RiskOut


class BayesianReadOut(BaseModel):
    absolute: BayesianOut | None
    relative: BayesianOut | None


class CupedOut(BaseModel):
    theta: float = Field(description="Regression coefficient, pooled over both variants")
    control_adjusted: float | None = Field(description="Adjusted control mean (or ratio)")
    treatment_adjusted: float | None
    unadjusted_absolute: EstimateOut = Field(description="The lift without the adjustment")
    unadjusted_relative: EstimateOut


class VariantQuantile(BaseModel):
    level: float
    observations: int = Field(description="Events (or units) the quantile is taken over")
    estimate: float | None
    lower: float | None = Field(description="Order statistic at the lower bound level")
    upper: float | None = Field(description="Order statistic at the upper bound level")


class VariantMetric(BaseModel):
    variant: str
    units: int
    mean: float | None = Field(description="Per-unit mean, the ratio Σx / Σy, or the quantile")
    variance: float | None = Field(description="Sample variance per unit (mean metrics)")
    numerator: float
    denominator: float | None = Field(description="Σy for ratio metrics")
    pre_mean: float | None = Field(
        default=None, description="Per-unit mean (or ratio) over the CUPED look-back window"
    )
    units_with_pre: int | None = Field(
        default=None, description="Units with events in the look-back window"
    )
    quantile: VariantQuantile | None = None


class ComparisonOut(BaseModel):
    variant: str
    control: str
    absolute: EstimateOut
    relative: EstimateOut
    always_valid: IntervalOut = Field(description="Always-valid 95 % interval of the absolute lift")
    always_valid_relative: IntervalOut
    always_valid_p_value: float | None
    adjusted_p_value: float | None = Field(
        description="Always-valid p, corrected across the family"
    )
    bayesian: BayesianReadOut | None = None
    cuped: CupedOut | None = Field(
        default=None, description="The regression adjustment, when the metric is adjusted"
    )
    verdict: stats.Verdict


class PriorOut(BaseModel):
    kind: Literal["flat", "gaussian"]
    mean: float | None = None
    stddev: float | None = None
    scale: Literal["relative"] = "relative"


class MethodOut(BaseModel):
    """Which test, correction, adjustment and prior produced the metric's numbers."""

    test: Literal["welch_t", "delta_method_t", "quantile_t"]
    relative: Literal["delta_method"] = "delta_method"
    variance_reduction: Literal["cuped", "cuped_ratio"] | None
    lookback_days: int | None
    sequential: Literal["asymptotic_confidence_sequence"] = "asymptotic_confidence_sequence"
    sequential_rho: float
    correction: Literal["holm", "benjamini_hochberg"]
    bayesian: Literal["gaussian_effect"] = "gaussian_effect"
    prior: PriorOut
    higher_is_better: bool
    documentation: str = METHODS_DOCUMENT


class QuantileOut(BaseModel):
    level: float
    scope: Literal["event", "unit"]
    computed_at: datetime
    refresh_seconds: float = Field(description="Quantiles are recomputed at most this often")
    next_refresh_after: datetime


class MetricResult(BaseModel):
    metric: str
    role: Literal["primary", "guardrail"]
    metric_kind: MetricKind | None
    analysed_as: AnalysedAs | None
    method: MethodOut | None = None
    quantile: QuantileOut | None = None
    variants: list[VariantMetric]
    comparisons: list[ComparisonOut]
    error: str | None = Field(default=None, description="Why the metric could not be analysed")


class VariantUnits(BaseModel):
    id: str
    name: str
    weight: float
    units: int


class SrmOut(BaseModel):
    statistic: float | None
    p_value: float | None
    checked: bool = Field(description="Enough units to run the check")
    flagged: bool = Field(description="Sample-ratio mismatch: p < 0.001")


class ExperimentResults(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": None})

    experiment: str
    computed_at: datetime
    source: Source = Field(
        default="warehouse",
        description="stream: the processor's streamed sufficient statistics (constant time); "
        "warehouse: recomputed from the events table",
    )
    as_of: datetime | None = Field(
        default=None,
        description="stream: when the newest streamed statistics were emitted (fresh up to "
        "the events the processor had applied then)",
    )
    source_note: str | None = Field(
        default=None, description="Why the warehouse answered when the stream could not"
    )
    correction: Literal["holm", "benjamini_hochberg"]
    alpha: float = ALPHA
    cuped_lookback_days: int = Field(default=0, description="0: no regression adjustment")
    variants: list[VariantUnits]
    multi_variant_units: int = Field(description="Units exposed to several variants (excluded)")
    srm: SrmOut
    metrics: list[MetricResult]


# --- Queries --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """A metric as SQL: per-event columns (computed while scanning ``events``, so only the
    properties a metric reads leave the scan) and per-unit aggregates of them (``x``,
    ``y``), after the exposure and, for CUPED, over the look-back window before it."""

    metric: MetricDefinition
    role: Literal["primary", "guardrail"]
    analysed_as: AnalysedAs
    columns: dict[str, tuple[str, str]]
    """Column name → (the event it reads, SQL); 0 on other events' rows."""
    x: str
    y: str
    x_pre: str
    y_pre: str


# Two variations of one unit: compared by a 64-bit hash of their ids (integers are several
# times cheaper to compare than strings; two ids of one experiment sharing a hash is beyond
# any practical chance).
_MULTI = "max(multi_variant) OR min(cityHash64(variation_id)) != max(cityHash64(variation_id))"
_POST = "e.timestamp >= u.exposed_at"


def _person_exposures(params: Params, project_id: str) -> str:
    """Exposures with the person of their unit: a person exposed under two ids to two
    variants is one unit in two variants."""
    return with_person(params, project_id, "exposures", "_src.unit_id")


def _unit_events(params: Params, project_id: str, unit_column: str) -> str:
    """Events with the person of their unit: the experiment's unit id when the event has
    one, else its ``distinct_id`` (an anonymous unit's events sent once it is known)."""
    return person_events(params, project_id, f"coalesce(_src.{unit_column}, _src.distinct_id)")


def _units_sql(params: Params, project_id: str, experiment: Experiment) -> str:
    """One row per unit: its first exposure's variant (1-based position in the experiment,
    0: a variant it does not define) and whether it saw several variants (flagged by the
    processor, or rows in two variants). Read from the base table: every aggregate here is
    unchanged by duplicate rows, so no view is needed.

    Units are keyed by a 64-bit hash of their id (also on the events side): hash joins and
    groupings on integers are several times cheaper than on strings, and among a billion
    units the chance that any two share a hash is below 3 in 100,000.
    """
    variants = params.add([v.id for v in experiment.variants], "Array(String)")
    return f"""
        SELECT person_key AS unit,
               indexOf({variants}, argMin(variation_id, timestamp)) AS variant,
               {_MULTI} AS multi
        FROM {_person_exposures(params, project_id)}
        WHERE project_id = {params.add(project_id, "String")}
          AND experiment = {params.add(experiment.id, "String")}
        GROUP BY unit
    """


def _analysed_units_sql(
    params: Params, project_id: str, experiment: Experiment, lookback: int = 0
) -> str:
    """The units the analysis keeps (seen in one variant), their variant as its 1-based
    position in the experiment (0: a variant it does not define), exposure time and the
    start of its look-back window (``since``: the exposure itself without one)."""
    variants = params.add([v.id for v in experiment.variants], "Array(String)")
    return f"""
        SELECT person_key AS unit,
               indexOf({variants}, argMin(variation_id, timestamp)) AS variant,
               min(timestamp) AS exposed_at,
               exposed_at - toIntervalDay({int(lookback)}) AS since
        FROM {_person_exposures(params, project_id)}
        WHERE project_id = {params.add(project_id, "String")}
          AND experiment = {params.add(experiment.id, "String")}
        GROUP BY unit
        HAVING NOT ({_MULTI})
    """


def _number(params: Params, metric: MetricDefinition) -> str:
    """The metric's value of an event: its property when that is a JSON number (the rule of
    the live metrics, ``sextant.schemas.filters.number_of``); for NPS and CSAT, the value of
    that score as a response (``sextant.schemas.metric_values.response_value``)."""
    assert metric.property is not None
    number = property_number(params, metric.property, "property")
    if metric.metric_kind not in SURVEY_KINDS:
        return number
    satisfied = params.add(metric.satisfied_from, "Float64")
    return response_value_sql(metric.metric_kind, number, satisfied)


def _per_unit(
    params: Params, metric: MetricDefinition, prefix: str, windows: tuple[str, ...]
) -> tuple[dict[str, tuple[str, str]], list[tuple[str, str]]]:
    """Per-event columns of ``metric`` and its per-unit ``(x, y)`` over each window: the
    rows a condition in ``windows`` selects among a unit's rows (``""``: all of them)."""
    kind = metric.metric_kind
    event = metric.event
    cond = filters_sql(params, metric.filters, "filters")
    hit, value, done = f"{prefix}_hit", f"{prefix}_value", f"{prefix}_done"

    def total(column: str, window: str, function: str = "sum") -> str:
        return f"{function}({column})" if not window else f"{function}If({column}, {window})"

    if kind in (MetricKind.COUNT, MetricKind.UNIQUE_USERS):
        function = "sum" if kind is MetricKind.COUNT else "max"
        columns = {hit: (event, f"toUInt8({cond})")}
        return columns, [(f"toFloat64({total(hit, w, function)})", "0") for w in windows]
    if kind is MetricKind.CONVERSION:
        assert metric.conversion_event is not None
        columns = {hit: (event, f"toUInt8({cond})"), done: (metric.conversion_event, "1")}
        seconds = int(metric.conversion_window_seconds)
        found = []
        for w in windows:
            steps = f"{hit}, {done}" if not w else f"{hit} AND {w}, {done} AND {w}"
            level = f"windowFunnel({seconds})(toDateTime(timestamp), {steps})"
            found.append((f"toFloat64({level} >= 2)", f"toFloat64({level} >= 1)"))
        return columns, found
    number = _number(params, metric)
    if kind is MetricKind.SUM:
        columns = {value: (event, f"if({cond}, ifNull({number}, 0), 0)")}
        return columns, [(total(value, w), "0") for w in windows]
    columns = {
        hit: (event, f"toUInt8({cond} AND {number} IS NOT NULL)"),
        value: (event, f"if({cond}, ifNull({number}, 0), 0)"),
    }
    return columns, [(total(value, w), f"toFloat64({total(hit, w)})") for w in windows]


def _plan(
    params: Params,
    metric: MetricDefinition,
    denominator: MetricDefinition | None,
    role: Literal["primary", "guardrail"],
    i: int,
    windows: tuple[str, ...],
) -> _Plan:
    """Per-event columns and per-unit SQL for ``metric`` (see the module's table) over the
    ``windows`` of :func:`_windows`: after the exposure, and before it for CUPED."""
    columns, found = _per_unit(params, metric, f"m{i}", windows)
    if denominator is not None:
        more, ratio = _per_unit(params, denominator, f"m{i}d", windows)
        columns |= more
        found = [(x, y) for (x, _), (y, _) in zip(found, ratio, strict=True)]
        analysed: AnalysedAs = "ratio"
    elif metric.metric_kind in _RATIO_KINDS:
        analysed = "ratio"
    else:
        analysed = "proportion" if metric.metric_kind is MetricKind.UNIQUE_USERS else "mean"
    (x, y), *pre = found
    x_pre, y_pre = pre[0] if pre else ("0", "0")
    return _Plan(metric, role, analysed, columns, x, y, x_pre, y_pre)


def _events_sql(
    params: Params,
    project_id: str,
    bounds: str,
    unit_column: str,
    columns: list[tuple[str, tuple[str, str]]],
) -> str:
    """The events the metrics read, one scan per event name (the table is sorted by event,
    so each scan reads its event's rows only, and properties only where a metric needs
    them), each row with every metric's columns (0 where the metric reads another event)."""
    scans = []
    for event in sorted({spec[0] for _, spec in columns}):
        values = ", ".join(
            f"{sql if of == event else '0'} AS {name}" for name, (of, sql) in columns
        )
        scans.append(
            f"SELECT person_key AS unit, timestamp, {values}"
            f" FROM {_unit_events(params, project_id, unit_column)}"
            f" WHERE {bounds} AND event = {params.add(event, 'String')}"
        )
    return " UNION ALL ".join(scans)


def _clamped(value: datetime) -> datetime:
    """A configured start or stop inside the range the warehouse's timestamps can hold."""
    try:
        moment = utc(value)
    except OverflowError:
        return EARLIEST if value.year < 2000 else LATEST
    return min(max(moment, EARLIEST), LATEST)


def _bounds(params: Params, project_id: str, experiment: Experiment, lookback_days: int) -> str:
    """The events a metric may read: the project's, from the experiment's start (less the
    look-back window) to its stop."""
    bounds = f"project_id = {params.add(project_id, 'String')}"
    if experiment.start is not None:
        start = _clamped(_clamped(experiment.start) - timedelta(days=lookback_days))
        bounds += f" AND timestamp >= {params.add(start, DATETIME)}"
    if experiment.stop is not None:
        bounds += f" AND timestamp < {params.add(_clamped(experiment.stop), DATETIME)}"
    return bounds


# The sums of SufficientStatistics (MOMENT_FIELDS order) as products of per-unit columns.
_MOMENTS = (
    ("x", None),
    ("x", "x"),
    ("y", None),
    ("y", "y"),
    ("x", "y"),
    ("xp", None),
    ("xp", "xp"),
    ("yp", None),
    ("yp", "yp"),
    ("xp", "yp"),
    ("x", "xp"),
    ("x", "yp"),
    ("y", "xp"),
    ("y", "yp"),
)
assert len(_MOMENTS) == len(MOMENT_FIELDS)


def _sums_sql(i: int, plan: _Plan) -> str:
    """Per variant: the 14 sums and the units with pre-exposure data (0 where a column is
    known to be 0 on every unit, so a mean metric without CUPED sums two columns)."""
    present = {"x": True, "y": plan.y != "0", "xp": plan.x_pre != "0", "yp": plan.y_pre != "0"}
    parts = []
    for a, b in _MOMENTS:
        if not present[a] or (b is not None and not present[b]):
            parts.append("0")
        else:
            parts.append(f"sum({a}{i})" if b is None else f"sum({a}{i} * {b}{i})")
    parts.append(f"countIf(xp{i} != 0 OR yp{i} != 0)" if present["xp"] else "0")
    return ", ".join(parts)


def _windows(params: Params, experiment: Experiment, lookback: int) -> tuple[str, ...]:
    """The conditions that select a unit's rows after its exposure (inside the experiment)
    and, with a look-back window, in it before the exposure. Without one every row read is
    after the exposure and inside the experiment: no condition (``""``)."""
    if not lookback:
        return ("",)
    after = _POST
    if experiment.start is not None:
        after += f" AND e.timestamp >= {params.add(_clamped(experiment.start), DATETIME)}"
    return f"({after})", "(e.timestamp < u.exposed_at)"


def _metrics_sql(
    params: Params, project_id: str, experiment: Experiment, plans: list[_Plan], lookback: int
) -> str:
    """Per variant: the sums of every plan (:func:`_sums_sql`) over a unit's events after its
    exposure and, for CUPED, in the look-back window before it (from ``u.since``)."""
    unit_column = _UNIT_COLUMNS[experiment.unit]
    bounds = _bounds(params, project_id, experiment, lookback)
    columns = [(name, spec) for p in plans for name, spec in p.columns.items()]
    events = _events_sql(params, project_id, bounds, unit_column, columns)
    units = _analysed_units_sql(params, project_id, experiment, lookback)
    sums = ", ".join(_sums_sql(i, p) for i, p in enumerate(plans))
    per_unit = ", ".join(
        f"{p.x} AS x{i}, {p.y} AS y{i}, {p.x_pre} AS xp{i}, {p.y_pre} AS yp{i}"
        for i, p in enumerate(plans)
    )
    # Units have one row each, so a semi join is an inner join with a simpler hash table.
    # Units without events have no row here: they count with zeros (``n`` comes from the
    # units query).
    return f"""
        SELECT variant, {sums}
        FROM (
            SELECT any(u.variant) AS variant, {per_unit}
            FROM ({events}) AS e
            LEFT SEMI JOIN ({units}) AS u ON e.unit = u.unit
            WHERE e.timestamp >= u.since
            GROUP BY e.unit
        )
        GROUP BY variant
    """


# --- Quantiles ------------------------------------------------------------------------------


def _interpolated(p: str) -> str:
    """The ``p`` quantile of the sorted array ``s`` of ``n`` values, linearly interpolated
    between order statistics (Hyndman and Fan's type 7, numpy's default)."""
    h = f"((n - 1) * {p})"
    below = f"toUInt64(floor({h}))"
    a, b = f"s[{below} + 1]", f"s[least({below} + 2, n)]"
    return f"({a} + ({b} - {a}) * ({h} - floor({h})))"


def _quantile_sql(
    params: Params, project_id: str, experiment: Experiment, metric: MetricDefinition
) -> str:
    """Per variant: ``n`` values, the quantile at ``metric.quantile`` and the order statistics
    at the bound levels of :func:`estimators.quantile_bound_levels` for ``n* = n``."""
    unit_column = _UNIT_COLUMNS[experiment.unit]
    bounds = _bounds(params, project_id, experiment, 0)
    cond = filters_sql(params, metric.filters, "filters")
    number = _number(params, metric)
    events = f"""
        SELECT person_key AS unit, timestamp, {number} AS v
        FROM {_unit_events(params, project_id, unit_column)}
        WHERE {bounds} AND event = {params.add(metric.event, "String")} AND {cond}
          AND v IS NOT NULL
    """
    joined = f"""
        FROM ({events}) AS e
        LEFT SEMI JOIN ({_analysed_units_sql(params, project_id, experiment)}) AS u
            ON e.unit = u.unit
        WHERE {_POST}
    """
    if metric.quantile_scope == "event":
        values = f"SELECT u.variant AS variant, e.v AS v {joined}"
    else:
        values = f"SELECT any(u.variant) AS variant, sum(e.v) AS v {joined} GROUP BY e.unit"
    nu = params.add(metric.quantile, "Float64")
    z = params.add(float(special.ndtri(1 - ALPHA / 2)), "Float64")
    low, high = estimators.QUANTILE_LEVEL_LIMITS
    spread = f"{z} * sqrt({nu} * (1 - {nu}) / n)"
    lower = f"greatest({nu} - {spread}, {params.add(low, 'Float64')})"
    upper = f"least({nu} + {spread}, {params.add(high, 'Float64')})"
    return f"""
        SELECT variant, n, {_interpolated(nu)}, {_interpolated(lower)}, {_interpolated(upper)}
        FROM (
            SELECT variant, arraySort(groupArray(v)) AS s, length(s) AS n
            FROM ({values})
            GROUP BY variant
        )
    """


def _clusters_sql(
    params: Params,
    project_id: str,
    experiment: Experiment,
    metric: MetricDefinition,
    estimates: list[float],
) -> str:
    """Per variant, over its units: Σc, Σc², Σm, Σm², Σcm, ``c`` a unit's events at or below
    its variant's quantile ``estimates[variant - 1]`` and ``m`` its events (GrowthBook's
    clustering of event quantiles by unit)."""
    unit_column = _UNIT_COLUMNS[experiment.unit]
    bounds = _bounds(params, project_id, experiment, 0)
    cond = filters_sql(params, metric.filters, "filters")
    number = _number(params, metric)
    quantiles = params.add(estimates, "Array(Float64)")
    return f"""
        SELECT variant, sum(c), sum(c * c), sum(m), sum(m * m), sum(c * m)
        FROM (
            SELECT any(u.variant) AS variant,
                   toFloat64(countIf(e.v <= {quantiles}[u.variant])) AS c,
                   toFloat64(count()) AS m
            FROM (
                SELECT person_key AS unit, timestamp,
                       {number} AS v
                FROM {_unit_events(params, project_id, unit_column)}
                WHERE {bounds} AND event = {params.add(metric.event, "String")} AND {cond}
                  AND v IS NOT NULL
            ) AS e
            LEFT SEMI JOIN ({_analysed_units_sql(params, project_id, experiment)}) AS u
                ON e.unit = u.unit
            WHERE {_POST}
            GROUP BY e.unit
        )
        GROUP BY variant
    """


@dataclass(frozen=True)
class Quantiles:
    """A quantile metric's statistics per variant, as computed at ``computed_at``."""

    computed_at: datetime
    per_variant: dict[str, estimators.QuantileStats]


def compute_quantiles(
    gateway: Gateway,
    project_id: str,
    experiment: Experiment,
    metric: MetricDefinition,
    counts: dict[str, int],
) -> Quantiles:
    """A ``percentiles`` metric's quantile statistics per variant, from the events table now
    (``counts``: the analysed units per variant, the clusters of event quantiles)."""
    variant_ids = [v.id for v in experiment.variants]
    params = Params()
    rows = run_query(
        gateway,
        "experiment_quantiles",
        _quantile_sql(params, project_id, experiment, metric),
        params,
        FINAL_PER_PARTITION,
    )
    found: dict[str, tuple[int, float, float, float]] = {}
    for variant, n, estimate, lower, upper in rows:
        if 0 < int(variant) <= len(variant_ids):
            found[variant_ids[int(variant) - 1]] = (int(n), estimate, lower, upper)
    clusters: dict[str, list[float]] = {}
    if metric.quantile_scope == "event" and found:
        estimates = [found.get(v, (0, math.nan))[1] for v in variant_ids]
        params = Params()
        sql = _clusters_sql(params, project_id, experiment, metric, estimates)
        for row in run_query(gateway, "experiment_quantile_clusters", sql, params):
            if 0 < int(row[0]) <= len(variant_ids):
                clusters[variant_ids[int(row[0]) - 1]] = [float(v) for v in row[1:]]
    per_variant = {}
    for variant, (n, estimate, lower, upper) in found.items():
        sums = clusters.get(variant)
        extra: tuple[Any, ...] = ()
        if sums is not None:
            extra = (counts.get(variant, 0), *sums)
        per_variant[variant] = estimators.QuantileStats(
            n, n, metric.quantile, float(estimate), float(lower), float(upper), *extra
        )
    return Quantiles(datetime.now(UTC), per_variant)


def _quantiles(
    gateway: Gateway,
    project_id: str,
    experiment: Experiment,
    metric: MetricDefinition,
    counts: dict[str, int],
) -> Quantiles:
    """The cached quantiles of ``metric``, recomputed once they are older than
    ``experiment_quantile_refresh_seconds`` (at once when a definition changes)."""
    key = (project_id, experiment.model_dump_json(), metric.model_dump_json())
    return gateway.quantile_cache.get(
        key, lambda: compute_quantiles(gateway, project_id, experiment, metric, counts)
    )


# --- Statistics -----------------------------------------------------------------------------


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _interval(interval: stats.Interval) -> IntervalOut:
    return IntervalOut(low=_finite(interval.low), high=_finite(interval.high))


def _estimate(estimate: stats.Estimate) -> EstimateOut:
    return EstimateOut(
        estimate=_finite(estimate.estimate),
        se=_finite(estimate.se),
        ci=_interval(estimate.ci),
        p_value=_finite(estimate.p_value),
    )


_NO_ESTIMATE = EstimateOut(estimate=None, ci=IntervalOut(low=None, high=None), p_value=None)


def _bayesian(read_out: stats.Bayesian | None) -> BayesianOut | None:
    if read_out is None:
        return None
    return BayesianOut(
        expected=_finite(read_out.mean),
        credible_interval=_interval(read_out.ci),
        chance_to_win=_finite(read_out.chance_to_win),
        risk=RiskOut(treatment=_finite(read_out.risk), control=_finite(read_out.risk_control)),
    )


def _prior(prior: EffectPrior | None) -> stats.GaussianPrior | None:
    return None if prior is None else stats.GaussianPrior(prior.mean, prior.stddev**2)


@dataclass
class _Arm:
    variant: str
    sums: SufficientStatistics
    quantile: estimators.QuantileStats | None = None


def _variant_metric(arm: _Arm, analysed_as: AnalysedAs, cuped: bool) -> VariantMetric:
    s, n = arm.sums, arm.sums.n
    pre_mean = None
    if analysed_as == "quantile":
        q = arm.quantile
        return VariantMetric(
            variant=arm.variant,
            units=n,
            mean=q.estimate if q else None,
            variance=None,
            numerator=0.0,
            denominator=None,
            quantile=VariantQuantile(
                level=q.nu,
                observations=q.n,
                estimate=_finite(q.estimate),
                lower=_finite(q.lower),
                upper=_finite(q.upper),
            )
            if q
            else None,
        )
    if analysed_as == "ratio":
        if cuped and s.sum_y_pre:
            pre_mean = s.sum_x_pre / s.sum_y_pre
        return VariantMetric(
            variant=arm.variant,
            units=n,
            mean=s.sum_x / s.sum_y if s.sum_y else None,
            variance=None,
            numerator=s.sum_x,
            denominator=s.sum_y,
            pre_mean=pre_mean,
            units_with_pre=s.units_with_pre if cuped else None,
        )
    m = estimators.mean_stats(s)
    return VariantMetric(
        variant=arm.variant,
        units=n,
        mean=m.mean if n else None,
        variance=m.variance if n >= 2 else None,
        numerator=s.sum_x,
        denominator=None,
        pre_mean=s.sum_x_pre / n if cuped and n else None,
        units_with_pre=s.units_with_pre if cuped else None,
    )


def _compare(
    control: _Arm, treatment: _Arm, analysed_as: AnalysedAs, cuped: bool, metric: MetricDefinition
) -> stats.Comparison | None:
    """The comparison, or None while it cannot be computed (too few units, no denominator,
    a quantile without variance)."""
    # rho is fixed in advance (tuned for ~10,000 units): tuning it on the sample seen so far
    # would make the interval depend on when one looks, and it would no longer be always valid.
    options = (ALPHA, stats.DEFAULT_RHO, _prior(metric.prior), metric.higher_is_better)
    c, t = control.sums, treatment.sums
    try:
        if analysed_as == "quantile":
            if control.quantile is None or treatment.quantile is None:
                return None
            return estimators.compare_quantiles(control.quantile, treatment.quantile, *options)
        if min(c.n, t.n) < 2:
            return None
        if analysed_as == "ratio":
            if c.sum_y <= 0 or t.sum_y <= 0:
                return None
            if cuped:
                return estimators.compare_ratio_cuped(c, t, *options)
            return stats.compare_ratios(
                estimators.ratio_stats(c), estimators.ratio_stats(t), *options
            )
        if cuped:
            return estimators.compare_cuped(
                estimators.CupedStats.of(c), estimators.CupedStats.of(t), *options
            )
        return stats.compare_means(estimators.mean_stats(c), estimators.mean_stats(t), *options)
    except (ValueError, ZeroDivisionError):
        return None


def _method(
    experiment: Experiment, metric: MetricDefinition, analysed_as: AnalysedAs, cuped: bool
) -> MethodOut:
    tests: dict[AnalysedAs, Literal["welch_t", "delta_method_t", "quantile_t"]] = {
        "mean": "welch_t",
        "proportion": "welch_t",
        "ratio": "delta_method_t",
        "quantile": "quantile_t",
    }
    prior = metric.prior
    return MethodOut(
        test=tests[analysed_as],
        variance_reduction=("cuped_ratio" if analysed_as == "ratio" else "cuped")
        if cuped
        else None,
        lookback_days=experiment.cuped_lookback_days if cuped else None,
        sequential_rho=stats.DEFAULT_RHO,
        correction=experiment.correction,
        prior=PriorOut(kind="flat")
        if prior is None
        else PriorOut(kind="gaussian", mean=prior.mean, stddev=prior.stddev),
        higher_is_better=metric.higher_is_better,
    )


@dataclass
class _Analysed:
    result: MetricResult
    comparisons: list[stats.Comparison | None]
    higher_is_better: bool


def _analyse(
    experiment: Experiment,
    metric: MetricDefinition,
    role: Literal["primary", "guardrail"],
    analysed_as: AnalysedAs,
    arms: list[_Arm],
    quantile: QuantileOut | None,
) -> _Analysed:
    cuped = experiment.cuped_lookback_days > 0 and analysed_as != "quantile"
    control = arms[0]
    comparisons = [_compare(control, arm, analysed_as, cuped, metric) for arm in arms[1:]]
    result = MetricResult(
        metric=metric.id,
        role=role,
        metric_kind=metric.metric_kind,
        analysed_as=analysed_as,
        method=_method(experiment, metric, analysed_as, cuped),
        quantile=quantile,
        variants=[_variant_metric(arm, analysed_as, cuped) for arm in arms],
        comparisons=[],
    )
    return _Analysed(result, comparisons, metric.higher_is_better)


def _error(metric: str, role: Literal["primary", "guardrail"], message: str) -> MetricResult:
    return MetricResult(
        metric=metric,
        role=role,
        metric_kind=None,
        analysed_as=None,
        variants=[],
        comparisons=[],
        error=message,
    )


@dataclass
class _Sums:
    counts: dict[str, int]
    """Analysed units (seen in one variant) per variant id."""
    multi_units: int
    per_plan: list[dict[str, SufficientStatistics]]


def _sufficient_statistics(
    gateway: Gateway, project_id: str, experiment: Experiment, plans: list[_Plan], params: Params,
    lookback: int,
) -> _Sums:  # fmt: skip
    """The units per variant and, per plan and variant, the statistics of the variant's
    analysed units (``n`` from the exposures: units without events count with zeros)."""
    variant_ids = [v.id for v in experiment.variants]
    unit_params = Params()
    units = _units_sql(unit_params, project_id, experiment)
    unit_rows = run_query(
        gateway,
        "experiment_units",
        f"SELECT variant, multi, count() FROM ({units}) GROUP BY variant, multi",
        unit_params,
    )
    counts: dict[str, int] = {}
    multi_units = 0
    for position, multi, n in unit_rows:
        if multi:
            multi_units += int(n)
        elif 0 < int(position) <= len(variant_ids):
            counts[variant_ids[int(position) - 1]] = int(n)
    found: dict[str, list[float]] = {}
    if plans:
        sql = _metrics_sql(params, project_id, experiment, plans, lookback)
        rows = run_query(gateway, "experiment_metrics", sql, params, FINAL_PER_PARTITION)
        found = {
            variant_ids[int(row[0]) - 1]: [float(v) for v in row[1:]]
            for row in rows
            if 0 < int(row[0]) <= len(variant_ids)
        }
    width = len(MOMENT_FIELDS) + 1
    per_plan = []
    for i in range(len(plans)):
        per_variant = {}
        for variant in variant_ids:
            values = found.get(variant, [0.0] * (width * (i + 1)))[width * i : width * (i + 1)]
            moments = dict(zip(MOMENT_FIELDS, values[:-1], strict=True))
            per_variant[variant] = SufficientStatistics(
                n=counts.get(variant, 0), units_with_pre=int(values[-1]), **moments
            )
        per_plan.append(per_variant)
    return _Sums(counts, multi_units, per_plan)


def warehouse_statistics(
    gateway: Gateway, project_id: str, experiment: Experiment, metrics: dict[str, MetricDefinition]
) -> dict[tuple[str, str], SufficientStatistics]:
    """Per (metric, variant) the events table's statistics of what the processor streams
    (metric ``""``: the variant's units), as the stream's records carry them: the reference
    the stream is checked against, and what a backfill of the stream would write."""
    streamed = streamed_metrics(experiment, metrics)
    params = Params()
    lookback = experiment.cuped_lookback_days
    windows = _windows(params, experiment, lookback)
    plans = []
    for i, metric in enumerate([] if isinstance(streamed, str) else streamed):
        definition = metrics[metric.id]
        denominator = (
            None
            if definition.denominator_metric is None
            else metrics[definition.denominator_metric]
        )
        plans.append(_plan(params, definition, denominator, "guardrail", i, windows))
    sums = _sufficient_statistics(gateway, project_id, experiment, plans, params, lookback)
    found = {
        ("", v.id): SufficientStatistics(n=sums.counts.get(v.id, 0)) for v in experiment.variants
    }
    for plan, per_variant in zip(plans, sums.per_plan, strict=True):
        found |= {(plan.metric.id, v): s for v, s in per_variant.items()}
    return found


@dataclass
class _Streamed:
    sums: _Sums
    as_of: datetime


def _streamed_sums(
    gateway: Gateway,
    project_id: str,
    experiment: Experiment,
    metrics: dict[str, MetricDefinition],
    plans: list[_Plan],
) -> _Streamed | str:
    """The sums the processor streamed for ``experiment``, or why they do not cover it.

    One row per source partition, variant and metric (``FINAL``: each partition's newest),
    so the cost does not grow with units or events. They cover the experiment when they
    follow its current definitions (fingerprint), every partition has reported, and each
    began before any event the results read (``tracked_after`` earlier than the start less
    the look-back); otherwise the events table answers (and backfills nothing: it is
    recomputed on each request).
    """
    streamed = streamed_metrics(experiment, metrics)
    if isinstance(streamed, str):
        return streamed
    if _has_merged_persons(gateway, project_id) and _exposed_merged_ids(
        gateway, project_id, experiment.id
    ):
        return "units of the experiment have other ids in their persons; the stream counts ids"
    params = Params()
    columns = ", ".join(STATISTICS_COLUMNS)
    rows = run_query(
        gateway,
        "experiment_statistics",
        f"SELECT {columns} FROM experiment_statistics FINAL"
        f" WHERE project_id = {params.add(project_id, 'String')}"
        f" AND experiment = {params.add(experiment.id, 'String')}",
        params,
    )
    records = [
        ExperimentMetricStatistics.from_row(dict(zip(STATISTICS_COLUMNS, row, strict=True)))
        for row in rows
    ]
    problem = _coverage_problem(experiment, metrics, records)
    if problem is not None:
        return problem
    return _Streamed(_add_partitions(experiment, plans, records), max(r.as_of for r in records))


def _has_merged_persons(gateway: Gateway, project_id: str) -> bool:
    """Whether the identity resolver has joined ids of the project into persons (a cheap
    first look: most projects without identify calls stop here)."""
    params = Params()
    rows = run_query(
        gateway,
        "merged_persons",
        "SELECT 1 FROM person_overrides"
        f" WHERE project_id = {params.add(project_id, 'String')}"
        " AND person_id != distinct_id LIMIT 1",
        params,
    )
    return bool(rows)


def _exposed_merged_ids(gateway: Gateway, project_id: str, experiment_id: str) -> bool:
    """Whether a unit exposed to the experiment is an id of a person of several ids (as a
    joined id, or as the id the person is named by). The stream's units are ids and the
    events table counts persons; they count the same where no exposed unit has another id,
    so only then does the stream answer. Newest overrides (``FINAL``): a split person's ids
    are their own persons again."""
    params = Params()
    project = params.add(project_id, "String")
    # Both ids of every merged override, from one read of the overrides.
    merged = (
        "SELECT arrayJoin([distinct_id, person_id]) FROM person_overrides FINAL"
        f" WHERE project_id = {project} AND person_id != distinct_id"
    )
    rows = run_query(
        gateway,
        "exposed_merged_ids",
        f"SELECT 1 FROM exposures WHERE project_id = {project}"
        f" AND experiment = {params.add(experiment_id, 'String')}"
        f" AND unit_id IN ({merged}) LIMIT 1",
        params,
    )
    return bool(rows)


def _coverage_problem(
    experiment: Experiment,
    metrics: dict[str, MetricDefinition],
    records: list[ExperimentMetricStatistics],
) -> str | None:
    if not records:
        return "no streamed statistics yet"
    fingerprint = statistics_fingerprint(experiment, metrics)
    current = [r for r in records if r.fingerprint == fingerprint]
    if len(current) != len(records):
        return "the streamed statistics follow an earlier definition"
    partitions = records[0].partitions
    reported = {r.source_partition for r in records if r.metric == ""}
    if reported != set(range(partitions)):
        return f"{partitions - len(reported)} of {partitions} partitions have not reported"
    first = None
    if experiment.start is not None:
        first = _clamped(experiment.start) - timedelta(days=experiment.cuped_lookback_days)
    for record in records:
        after = record.tracked_after
        if after is not None and (first is None or utc(after) >= first):
            return "the stream began after events the results read (the warehouse backfills)"
    return None


def _add_partitions(
    experiment: Experiment, plans: list[_Plan], records: list[ExperimentMetricStatistics]
) -> _Sums:
    """Per variant (and plan): the partitions' statistics added up, exactly rounded."""
    grouped: dict[tuple[str, str], list[SufficientStatistics]] = {}
    multi: dict[int, int] = {}
    for record in records:
        grouped.setdefault((record.metric, record.variant), []).append(record.statistics)
        multi[record.source_partition] = record.multi_variant_units
    counts = {v.id: sum(s.n for s in grouped.get(("", v.id), [])) for v in experiment.variants}
    per_plan = []
    for plan in plans:
        per_variant = {}
        for variant in experiment.variants:
            parts = grouped.get((plan.metric.id, variant.id), [])
            sums = {name: math.fsum(getattr(s, name) for s in parts) for name in MOMENT_FIELDS}
            per_variant[variant.id] = SufficientStatistics(
                n=counts[variant.id], units_with_pre=sum(s.units_with_pre for s in parts), **sums
            )
        per_plan.append(per_variant)
    return _Sums({k: n for k, n in counts.items() if n}, sum(multi.values()), per_plan)


def experiment_results(
    gateway: Gateway,
    project_id: str,
    experiment: Experiment,
    metrics: dict[str, MetricDefinition],
    source: Source | None = None,
) -> ExperimentResults:
    """Results of ``experiment``: from the streamed statistics when they cover it (and
    ``source`` is not ``warehouse``), else recomputed from the warehouse as it stands now
    (quantile metrics as of their last refresh, which the response states)."""
    variant_ids = [v.id for v in experiment.variants]
    roles: list[tuple[str, Literal["primary", "guardrail"]]] = []
    if experiment.primary_metric:
        roles.append((experiment.primary_metric, "primary"))
    roles += [
        (m, "guardrail") for m in experiment.guardrail_metrics if m != experiment.primary_metric
    ]
    lookback = experiment.cuped_lookback_days
    params = Params()
    windows = _windows(params, experiment, lookback)
    plans: list[_Plan] = []
    quantile_metrics: list[tuple[MetricDefinition, Literal["primary", "guardrail"]]] = []
    order: list[tuple[str, int | None]] = []  # metric id, its plan (None: quantile or error)
    errors: dict[str, MetricResult] = {}
    for metric_id, role in roles:
        metric = metrics.get(metric_id)
        denominator = None
        if metric is not None and metric.denominator_metric is not None:
            denominator = metrics.get(metric.denominator_metric)
            if denominator is None or denominator.metric_kind not in _RATIO_PARTS:
                errors[metric_id] = _error(
                    metric_id,
                    role,
                    f"denominator metric '{metric.denominator_metric}' is not defined"
                    if denominator is None
                    else f"denominator metric '{denominator.id}' is not a count, sum or "
                    "unique_users metric",
                )
                order.append((metric_id, None))
                continue
        if metric is None:
            errors[metric_id] = _error(metric_id, role, f"metric '{metric_id}' is not defined")
            order.append((metric_id, None))
        elif metric.metric_kind is MetricKind.PERCENTILES:
            quantile_metrics.append((metric, role))
            order.append((metric_id, None))
        else:
            order.append((metric_id, len(plans)))
            plans.append(_plan(params, metric, denominator, role, len(plans), windows))

    streamed: _Streamed | str = "the warehouse was asked for"
    if source != "warehouse":
        streamed = _streamed_sums(gateway, project_id, experiment, metrics, plans)
    if isinstance(streamed, str):
        sums = _sufficient_statistics(gateway, project_id, experiment, plans, params, lookback)
    else:
        sums = streamed.sums
    counts, multi_units = sums.counts, sums.multi_units
    srm = stats.srm_check(
        [counts.get(v, 0) for v in variant_ids], [v.weight for v in experiment.variants]
    )
    analysed: dict[str, _Analysed] = {}
    for i, plan in enumerate(plans):
        arms = [_Arm(v, sums.per_plan[i][v]) for v in variant_ids]
        analysed[plan.metric.id] = _analyse(
            experiment, plan.metric, plan.role, plan.analysed_as, arms, None
        )
    refresh = gateway.quantile_cache.max_age
    for metric, role in quantile_metrics:
        computed = _quantiles(gateway, project_id, experiment, metric, counts)
        arms = [
            _Arm(v, SufficientStatistics(n=counts.get(v, 0)), computed.per_variant.get(v))
            for v in variant_ids
        ]
        schedule = QuantileOut(
            level=metric.quantile,
            scope=metric.quantile_scope,
            computed_at=computed.computed_at,
            refresh_seconds=refresh,
            next_refresh_after=computed.computed_at + timedelta(seconds=refresh),
        )
        analysed[metric.id] = _analyse(experiment, metric, role, "quantile", arms, schedule)

    ordered = [analysed[m] for m, plan in order if m in analysed]
    _decide(experiment, ordered, srm)
    return ExperimentResults(
        experiment=experiment.id,
        computed_at=datetime.now(UTC),
        source="warehouse" if isinstance(streamed, str) else "stream",
        as_of=None if isinstance(streamed, str) else streamed.as_of,
        source_note=streamed if isinstance(streamed, str) else None,
        correction=experiment.correction,
        cuped_lookback_days=lookback,
        variants=[
            VariantUnits(id=v.id, name=v.name, weight=v.weight, units=counts.get(v.id, 0))
            for v in experiment.variants
        ],
        multi_variant_units=multi_units,
        srm=SrmOut(
            statistic=_finite(srm.statistic),
            p_value=_finite(srm.p_value),
            checked=srm.checked,
            flagged=srm.flagged,
        ),
        metrics=[a.result for a in ordered] + [errors[m] for m, _ in order if m in errors],
    )


def _decide(experiment: Experiment, analysed: list[_Analysed], srm: stats.SrmResult) -> None:
    """Fill in every comparison with its corrected p-value and verdict, the whole experiment
    (all metrics × all treatment variants) being one family."""
    family = [c for a in analysed for c in a.comparisons if c is not None]
    correction = _CORRECTIONS[experiment.correction]
    adjusted = iter(stats.adjust_p_values([c.sequential_p_value for c in family], correction))
    control = experiment.variants[0].id
    for item in analysed:
        for variant, comparison in zip(experiment.variants[1:], item.comparisons, strict=True):
            item.result.comparisons.append(
                _comparison_out(
                    experiment,
                    control,
                    variant.id,
                    comparison,
                    adjusted,
                    srm,
                    item.higher_is_better,
                )
            )


def _comparison_out(
    experiment: Experiment,
    control: str,
    variant: str,
    comparison: stats.Comparison | None,
    adjusted: Any,
    srm: stats.SrmResult,
    higher_is_better: bool,
) -> ComparisonOut:
    none = IntervalOut(low=None, high=None)
    if comparison is None:
        verdict = stats.Verdict.INVALID_SRM if srm.flagged else stats.Verdict.TOO_EARLY
        return ComparisonOut(
            variant=variant,
            control=control,
            absolute=_NO_ESTIMATE,
            relative=_NO_ESTIMATE,
            always_valid=none,
            always_valid_relative=none,
            always_valid_p_value=None,
            adjusted_p_value=None,
            verdict=verdict,
        )
    p_adjusted = float(next(adjusted))
    verdict = stats.verdict(
        comparison, srm, p_adjusted, ALPHA, higher_is_better, experiment.min_sample_per_variant
    )
    cuped = comparison.cuped
    return ComparisonOut(
        variant=variant,
        control=control,
        absolute=_estimate(comparison.absolute),
        relative=_estimate(comparison.relative),
        always_valid=_interval(comparison.sequential),
        always_valid_relative=_interval(comparison.sequential_relative),
        always_valid_p_value=_finite(comparison.sequential_p_value),
        adjusted_p_value=_finite(p_adjusted),
        bayesian=BayesianReadOut(
            absolute=_bayesian(comparison.bayesian),
            relative=_bayesian(comparison.bayesian_relative),
        ),
        cuped=None
        if cuped is None
        else CupedOut(
            theta=cuped.theta,
            control_adjusted=_finite(cuped.control_mean),
            treatment_adjusted=_finite(cuped.treatment_mean),
            unadjusted_absolute=_estimate(cuped.unadjusted),
            unadjusted_relative=_estimate(cuped.unadjusted_relative),
        ),
        verdict=verdict,
    )

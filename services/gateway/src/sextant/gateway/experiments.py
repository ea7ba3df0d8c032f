"""Experiment results, computed live in the warehouse when asked.

Units are the experiment's first exposures (``exposures_first``): each unit's earliest
exposure and its variation; a unit exposed to more than one variation is counted and left
out of the analysis. The warehouse joins every unit to its events *after its first exposure*
(and inside the experiment's start/stop) and reduces each variant to sufficient statistics
per metric; :mod:`sextant.gateway.stats` turns those into lifts, intervals, p-values, the
sample-ratio check and verdicts. Nothing is cached: results are as fresh as the warehouse.

How each kind of metric is measured per unit (``x`` the numerator, ``y`` the denominator):

=================  ===================================================  ==================
metric kind        per unit                                             analysed as
=================  ===================================================  ==================
``count``          x = matching events                                  mean per unit
``unique_users``   x = 1 if the unit had a matching event, else 0       proportion
``sum``            x = sum of the property                              mean per unit
``mean``           x = sum of the property, y = events with it          ratio Σx / Σy
``percentiles``    as ``mean`` (no sufficient statistic for a quantile)  ratio Σx / Σy
``conversion``     y = did the event, x = converted within the window   ratio Σx / Σy
=================  ===================================================  ==================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sextant.gateway import stats
from sextant.gateway.context import Gateway
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
from sextant.schemas.config import Experiment, MetricDefinition, MetricKind

ALPHA = 0.05
_UNIT_COLUMNS = {"userId": "user_id", "anonymousId": "anonymous_id"}
_RATIO_KINDS = (MetricKind.MEAN, MetricKind.PERCENTILES, MetricKind.CONVERSION)
_CORRECTIONS: dict[str, stats.Correction] = {"holm": "holm", "benjamini_hochberg": "bh"}


# --- Response -------------------------------------------------------------------------------


class IntervalOut(BaseModel):
    low: float | None
    high: float | None


class EstimateOut(BaseModel):
    estimate: float | None
    ci: IntervalOut = Field(description="95 % confidence interval (fixed horizon)")
    p_value: float | None


class VariantMetric(BaseModel):
    variant: str
    units: int
    mean: float | None = Field(description="Per-unit mean, or the ratio Σx / Σy")
    variance: float | None = Field(description="Sample variance per unit (mean metrics)")
    numerator: float
    denominator: float | None = Field(description="Σy for ratio metrics")


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
    verdict: stats.Verdict


class MetricResult(BaseModel):
    metric: str
    role: Literal["primary", "guardrail"]
    metric_kind: MetricKind | None
    analysed_as: Literal["mean", "proportion", "ratio"] | None
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
    correction: Literal["holm", "benjamini_hochberg"]
    alpha: float = ALPHA
    variants: list[VariantUnits]
    multi_variant_units: int = Field(description="Units exposed to several variants (excluded)")
    srm: SrmOut
    metrics: list[MetricResult]


# --- Queries --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """A metric as SQL: per-event columns (computed while scanning ``events``, so only the
    properties a metric reads leave the scan) and per-unit aggregates of them for x and y."""

    metric: MetricDefinition
    role: Literal["primary", "guardrail"]
    columns: dict[str, tuple[str, str]]
    """Column name → (the event it reads, SQL); 0 on other events' rows."""
    x: str
    y: str


_MULTI = "max(multi_variant) OR min(variation_id) != max(variation_id)"


def _units_sql(params: Params, project_id: str, experiment: str) -> str:
    """One row per unit: its first exposure's variant and time, and whether it saw several
    variants (flagged by the processor, or rows in two variants). Read from the base table:
    every aggregate here is unchanged by duplicate rows, so no view is needed.

    Units are keyed by a 64-bit hash of their id (also on the events side): hash joins and
    groupings on integers are several times cheaper than on strings, and among a billion
    units the chance that any two share a hash is below 3 in 100,000.
    """
    return f"""
        SELECT cityHash64(unit_id) AS unit, argMin(variation_id, timestamp) AS variant,
               min(timestamp) AS exposed_at, {_MULTI} AS multi
        FROM exposures
        WHERE project_id = {params.add(project_id, "String")}
          AND experiment = {params.add(experiment, "String")}
        GROUP BY unit
    """


def _analysed_units_sql(params: Params, project_id: str, experiment: Experiment) -> str:
    """The units the analysis keeps (seen in one variant), their variant as its 1-based
    position in the experiment (0: a variant it does not define), and exposure time."""
    variants = params.add([v.id for v in experiment.variants], "Array(String)")
    return f"""
        SELECT cityHash64(unit_id) AS unit,
               indexOf({variants}, argMin(variation_id, timestamp)) AS variant,
               min(timestamp) AS exposed_at
        FROM exposures
        WHERE project_id = {params.add(project_id, "String")}
          AND experiment = {params.add(experiment.id, "String")}
        GROUP BY unit
        HAVING NOT ({_MULTI})
    """


def _number(params: Params, metric: MetricDefinition) -> str:
    """The metric's value of an event: its property when that is a JSON number (the rule of
    the live metrics, ``sextant.schemas.filters.number_of``)."""
    assert metric.property is not None
    return property_number(params, metric.property, "property")


def _plan(
    params: Params, metric: MetricDefinition, role: Literal["primary", "guardrail"], i: int
) -> _Plan:
    """Per-event columns and per-unit ``x``/``y`` SQL for ``metric`` (see the module's table)."""
    kind = metric.metric_kind
    event = metric.event
    cond = filters_sql(params, metric.filters, "filters")
    hit = f"m{i}_hit"
    if kind is MetricKind.COUNT:
        return _Plan(
            metric, role, {hit: (event, f"toUInt8({cond})")}, f"toFloat64(sum({hit}))", "0"
        )
    if kind is MetricKind.UNIQUE_USERS:
        return _Plan(
            metric, role, {hit: (event, f"toUInt8({cond})")}, f"toFloat64(max({hit}))", "0"
        )
    if kind is MetricKind.CONVERSION:
        assert metric.conversion_event is not None
        done = f"m{i}_done"
        columns = {hit: (event, f"toUInt8({cond})"), done: (metric.conversion_event, "1")}
        window = int(metric.conversion_window_seconds)
        level = f"windowFunnel({window})(toDateTime(timestamp), {hit}, {done})"
        return _Plan(metric, role, columns, f"toFloat64({level} >= 2)", f"toFloat64({level} >= 1)")
    value = f"m{i}_value"
    number = _number(params, metric)
    if kind is MetricKind.SUM:
        columns = {value: (event, f"if({cond}, ifNull({number}, 0), 0)")}
        return _Plan(metric, role, columns, f"sum({value})", "0")
    columns = {
        hit: (event, f"toUInt8({cond} AND {number} IS NOT NULL)"),
        value: (event, f"if({cond}, ifNull({number}, 0), 0)"),
    }
    return _Plan(metric, role, columns, f"sum({value})", f"toFloat64(sum({hit}))")


def _events_sql(params: Params, bounds: str, unit_column: str, plans: list[_Plan]) -> str:
    """The events the metrics read, one scan per event name (the table is sorted by event,
    so each scan reads its event's rows only, and properties only where a metric needs
    them), each row with every metric's columns (0 where the metric reads another event)."""
    columns = [(name, spec) for p in plans for name, spec in p.columns.items()]
    scans = []
    for event in sorted({spec[0] for _, spec in columns}):
        values = ", ".join(
            f"{sql if of == event else '0'} AS {name}" for name, (of, sql) in columns
        )
        scans.append(
            f"SELECT cityHash64(assumeNotNull({unit_column})) AS unit, timestamp, {values}"
            f" FROM events_unique"
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


def _metrics_sql(
    params: Params, project_id: str, experiment: Experiment, plans: list[_Plan]
) -> str:
    unit_column = _UNIT_COLUMNS[experiment.unit]
    bounds = f"project_id = {params.add(project_id, 'String')}"
    bounds += f" AND {unit_column} IS NOT NULL"
    if experiment.start is not None:
        bounds += f" AND timestamp >= {params.add(_clamped(experiment.start), DATETIME)}"
    if experiment.stop is not None:
        bounds += f" AND timestamp < {params.add(_clamped(experiment.stop), DATETIME)}"
    per_unit = ", ".join(f"{p.x} AS x{i}, {p.y} AS y{i}" for i, p in enumerate(plans))
    sums = ", ".join(
        f"sum(x{i}), sum(x{i} * x{i}), sum(y{i}), sum(y{i} * y{i}), sum(x{i} * y{i})"
        for i in range(len(plans))
    )
    # Units have one row each, so a semi join is an inner join with a simpler hash table.
    return f"""
        SELECT variant, {sums}
        FROM (
            SELECT any(u.variant) AS variant, {per_unit}
            FROM ({_events_sql(params, bounds, unit_column, plans)}) AS e
            LEFT SEMI JOIN ({_analysed_units_sql(params, project_id, experiment)}) AS u
                ON e.unit = u.unit
            WHERE e.timestamp >= u.exposed_at
            GROUP BY e.unit
        )
        GROUP BY variant
    """


# --- Statistics -----------------------------------------------------------------------------


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _interval(interval: stats.Interval) -> IntervalOut:
    return IntervalOut(low=_finite(interval.low), high=_finite(interval.high))


def _estimate(estimate: stats.Estimate) -> EstimateOut:
    return EstimateOut(
        estimate=_finite(estimate.estimate),
        ci=_interval(estimate.ci),
        p_value=_finite(estimate.p_value),
    )


_NO_ESTIMATE = EstimateOut(estimate=None, ci=IntervalOut(low=None, high=None), p_value=None)


@dataclass
class _Arm:
    variant: str
    n: int
    sums: tuple[float, float, float, float, float]  # Σx, Σx², Σy, Σy², Σxy

    def mean_stats(self) -> stats.MeanStats:
        return stats.MeanStats(n=self.n, sum=self.sums[0], sum_sq=self.sums[1])

    def ratio_stats(self) -> stats.RatioStats:
        sx, sxx, sy, syy, sxy = self.sums
        return stats.RatioStats(self.n, sx, sxx, sy, syy, sxy)


def _analysed_as(kind: MetricKind) -> Literal["mean", "proportion", "ratio"]:
    if kind in _RATIO_KINDS:
        return "ratio"
    return "proportion" if kind is MetricKind.UNIQUE_USERS else "mean"


def _variant_metric(arm: _Arm, ratio: bool) -> VariantMetric:
    sx, _, sy, _, _ = arm.sums
    if ratio:
        mean = sx / sy if sy else None
        return VariantMetric(
            variant=arm.variant, units=arm.n, mean=mean, variance=None, numerator=sx, denominator=sy
        )
    m = arm.mean_stats()
    return VariantMetric(
        variant=arm.variant,
        units=arm.n,
        mean=m.mean if arm.n else None,
        variance=m.variance if arm.n >= 2 else None,
        numerator=sx,
        denominator=None,
    )


def _compare(control: _Arm, treatment: _Arm, ratio: bool) -> stats.Comparison | None:
    """The comparison, or None while it cannot be computed (too few units, no denominator)."""
    if min(control.n, treatment.n) < 2:
        return None
    # rho is fixed in advance (tuned for ~10,000 units): tuning it on the sample seen so far
    # would make the interval depend on when one looks, and it would no longer be always valid.
    rho = stats.DEFAULT_RHO
    try:
        if ratio:
            if control.sums[2] <= 0 or treatment.sums[2] <= 0:
                return None
            return stats.compare_ratios(control.ratio_stats(), treatment.ratio_stats(), ALPHA, rho)
        return stats.compare_means(control.mean_stats(), treatment.mean_stats(), ALPHA, rho)
    except (ValueError, ZeroDivisionError):
        return None


def experiment_results(
    gateway: Gateway, project_id: str, experiment: Experiment, metrics: dict[str, MetricDefinition]
) -> ExperimentResults:
    """Results of ``experiment`` from the warehouse as it stands now."""
    params = Params()
    units_sql = _units_sql(params, project_id, experiment.id)
    unit_rows = run_query(
        gateway,
        "experiment_units",
        f"SELECT variant, multi, count() FROM ({units_sql}) GROUP BY variant, multi",
        params,
    )
    counts: dict[str, int] = {}
    multi_units = 0
    for variant, multi, n in unit_rows:
        if multi:
            multi_units += int(n)
        else:
            counts[str(variant)] = counts.get(str(variant), 0) + int(n)
    variant_ids = [v.id for v in experiment.variants]
    srm = stats.srm_check(
        [counts.get(v, 0) for v in variant_ids], [v.weight for v in experiment.variants]
    )

    roles: list[tuple[str, Literal["primary", "guardrail"]]] = []
    if experiment.primary_metric:
        roles.append((experiment.primary_metric, "primary"))
    roles += [
        (m, "guardrail") for m in experiment.guardrail_metrics if m != experiment.primary_metric
    ]
    plans = [
        _plan(params, metrics[m], role, i)
        for i, (m, role) in enumerate((m, r) for m, r in roles if m in metrics)
    ]
    sums: dict[str, list[float]] = {}
    if plans:
        sql = _metrics_sql(params, project_id, experiment, plans)
        found = run_query(gateway, "experiment_metrics", sql, params, FINAL_PER_PARTITION)
        sums = {
            variant_ids[int(row[0]) - 1]: [float(v) for v in row[1:]]
            for row in found
            if 0 < int(row[0]) <= len(variant_ids)
        }

    results = [
        MetricResult(
            metric=m,
            role=role,
            metric_kind=None,
            analysed_as=None,
            variants=[],
            comparisons=[],
            error=f"metric '{m}' is not defined",
        )
        for m, role in roles
        if m not in metrics
    ]
    analysed = [_analyse(experiment, plan, i, counts, sums) for i, plan in enumerate(plans)]
    _decide(experiment, analysed, srm)
    return ExperimentResults(
        experiment=experiment.id,
        computed_at=datetime.now(UTC),
        correction=experiment.correction,
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
        metrics=[a.result for a in analysed] + results,
    )


@dataclass
class _Analysed:
    result: MetricResult
    comparisons: list[stats.Comparison | None]


def _analyse(
    experiment: Experiment,
    plan: _Plan,
    index: int,
    counts: dict[str, int],
    sums: dict[str, list[float]],
) -> _Analysed:
    ratio = plan.metric.metric_kind in _RATIO_KINDS
    arms = []
    for variant in experiment.variants:
        values = sums.get(variant.id, [0.0] * (5 * (index + 1)))[5 * index : 5 * index + 5]
        arms.append(
            _Arm(
                variant.id,
                counts.get(variant.id, 0),
                (values[0], values[1], values[2], values[3], values[4]),
            )
        )
    control = arms[0]
    comparisons = [_compare(control, arm, ratio) for arm in arms[1:]]
    result = MetricResult(
        metric=plan.metric.id,
        role=plan.role,
        metric_kind=plan.metric.metric_kind,
        analysed_as=_analysed_as(plan.metric.metric_kind),
        variants=[_variant_metric(arm, ratio) for arm in arms],
        comparisons=[],
    )
    return _Analysed(result, comparisons)


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
                _comparison_out(experiment, control, variant.id, comparison, adjusted, srm)
            )


def _comparison_out(
    experiment: Experiment,
    control: str,
    variant: str,
    comparison: stats.Comparison | None,
    adjusted: Any,
    srm: stats.SrmResult,
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
        comparison, srm, p_adjusted, ALPHA, True, experiment.min_sample_per_variant
    )
    return ComparisonOut(
        variant=variant,
        control=control,
        absolute=_estimate(comparison.absolute),
        relative=_estimate(comparison.relative),
        always_valid=_interval(comparison.sequential),
        always_valid_relative=_interval(comparison.sequential_relative),
        always_valid_p_value=_finite(comparison.sequential_p_value),
        adjusted_p_value=_finite(p_adjusted),
        verdict=verdict,
    )

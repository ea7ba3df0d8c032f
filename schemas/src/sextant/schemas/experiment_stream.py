"""What the processor streams of an experiment, and how a reader knows it is still that.

One meaning for the processor (which keeps the sums) and the gateway (which reads them):

- :func:`unit_of`: the unit an event or an exposure belongs to. The one place that decides
  it; persons (identity resolution) change it here.
- :func:`streamed_metrics`: how each metric of an experiment is measured per unit, as the
  ``x`` and ``y`` parts of the events-table query (``sextant.gateway.experiments``), or why
  the experiment is not streamed (a conversion metric needs the unit's funnel; a quantile
  has no sufficient statistics and is left to the events table).
- :func:`statistics_fingerprint`: a digest of everything the sums depend on (variants,
  unit, start, stop, look-back, the metrics' definitions); the processor starts the sums
  afresh when it changes and the gateway reads only sums of the current definitions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import orjson

from sextant.schemas.config import (
    RATIO_PARTS,
    SURVEY_KINDS,
    Experiment,
    MetricDefinition,
    MetricKind,
)

Aggregate = Literal["count", "max", "value", "hits"]
"""Per unit: ``count`` events that match, ``max`` 1 if any did, ``value`` the sum of the
property (of each response's value for NPS and CSAT, ``metric_values.response_value``),
``hits`` events whose property is a number."""

STREAMED_UNITS = ("userId",)
"""Experiment units whose events are all on the unit's partition of ``events.raw`` (keyed by
``distinct_id``, which is the ``userId`` when there is one)."""

_VALUE_FIELDS = (
    "metric_kind",
    "event",
    "property",
    "filters",
    "conversion_event",
    "conversion_window_seconds",
    "denominator_metric",
)


@dataclass(frozen=True)
class Part:
    """One per-unit aggregate of one metric's events."""

    metric: MetricDefinition
    aggregate: Aggregate


@dataclass(frozen=True)
class StreamedMetric:
    """A metric of an experiment as per-unit ``x`` (and, for a ratio, ``y``)."""

    id: str
    x: Part
    y: Part | None


def unit_of(user_id: str | None, anonymous_id: str | None, unit_field: str) -> str | None:
    """The unit of an event (or exposure) for an experiment randomised on ``unit_field``."""
    return user_id if unit_field == "userId" else anonymous_id


def _parts(metric: MetricDefinition) -> tuple[Part, Part | None]:
    kind = metric.metric_kind
    if kind is MetricKind.COUNT:
        return Part(metric, "count"), None
    if kind is MetricKind.UNIQUE_USERS:
        return Part(metric, "max"), None
    if kind is MetricKind.SUM:
        return Part(metric, "value"), None
    return Part(metric, "value"), Part(metric, "hits")  # mean: Σ value / Σ valued events


def experiment_metric_ids(experiment: Experiment) -> list[str]:
    """The primary metric, then the guardrails (as the results list them)."""
    ids = [experiment.primary_metric] if experiment.primary_metric else []
    return ids + [m for m in experiment.guardrail_metrics if m not in ids]


def streamed_metrics(
    experiment: Experiment, metrics: Mapping[str, MetricDefinition]
) -> list[StreamedMetric] | str:
    """The experiment's metrics as parts, or the reason it is not streamed.

    Quantile metrics and metrics that are not defined are left out (the results compute
    or report them without the stream).
    """
    if experiment.unit not in STREAMED_UNITS:
        return f"units are {experiment.unit}: a unit's events may be on several partitions"
    found = []
    for metric_id in experiment_metric_ids(experiment):
        metric = metrics.get(metric_id)
        if metric is None or metric.metric_kind is MetricKind.PERCENTILES:
            continue
        if metric.metric_kind is MetricKind.CONVERSION:
            return f"metric '{metric_id}' is a conversion"
        x, y = _parts(metric)
        if metric.denominator_metric is not None:
            denominator = metrics.get(metric.denominator_metric)
            if denominator is None or denominator.metric_kind not in RATIO_PARTS:
                continue
            y = _parts(denominator)[0]
        found.append(StreamedMetric(metric_id, x, y))
    return found


def statistics_fingerprint(experiment: Experiment, metrics: Mapping[str, MetricDefinition]) -> str:
    """A digest of what the experiment's sums depend on (see the module docstring)."""
    used = experiment_metric_ids(experiment)
    used += [d for m in used if (d := _denominator(metrics.get(m))) is not None]
    payload = {
        "variants": [v.id for v in experiment.variants],
        "unit": experiment.unit,
        "start": None if experiment.start is None else experiment.start.isoformat(),
        "stop": None if experiment.stop is None else experiment.stop.isoformat(),
        "lookback": experiment.cuped_lookback_days,
        "metrics": {
            m: None
            if metrics.get(m) is None
            else metrics[m].model_dump(mode="json", include=_value_fields(metrics[m]))
            for m in used
        },
    }
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _value_fields(metric: MetricDefinition) -> set[str]:
    """The fields a metric's per-unit sums depend on; a survey's threshold only for surveys,
    so other metrics keep the fingerprints they had."""
    fields = set(_VALUE_FIELDS)
    if metric.metric_kind in SURVEY_KINDS:
        fields.add("satisfied_from")
    return fields


def _denominator(metric: MetricDefinition | None) -> str | None:
    return None if metric is None else metric.denominator_metric

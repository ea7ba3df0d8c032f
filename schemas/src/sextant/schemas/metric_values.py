"""What a metric's value is, from the additive components its points carry.

Defined once for every reader: the gateway's series and live stream, and the alert rules,
so an alert judges the number the dashboard shows. A window, or several merged (an hour, an
evaluation window), is read the same way: counts, sums and denominators add up; unique users
come from the merged HyperLogLog registers; percentiles from the pooled t-digest centroids
(:mod:`sextant.schemas.sketches`).

=================  ==============================================  ==================
kind               value                                           volume
=================  ==============================================  ==================
``count``          ``count`` (0 for no events)                     ``count``
``sum``            ``sum`` (0 for no events)                       ``count``
``mean``           ``sum / count``; None for no events             ``count``
``unique_users``   the registers' estimate, rounded; 0 for no      the value
                   events; None (unknown) for events whose points
                   carry no register (written before migration
                   0006 and never backfilled)
``conversion``     ``count / denominator``; None for no A users    ``denominator``
``percentiles``    the quantile asked for (the median by default)  ``count``
                   of the centroids; None for no values
``nps``, ``csat``  ``sum / count``, a mean over the responses'     ``count``
                   values (:func:`response_value`); None for no
                   responses
=================  ==============================================  ==================

An NPS or CSAT window is the window of a mean over each response's value: NPS maps a score
of 9 or more (a promoter) to 100, 6 or less (a detractor) to -100 and anything between to 0,
so the mean is % promoters - % detractors; CSAT maps a score of at least the definition's
``satisfied_from`` to 1, else 0, so the mean is the satisfied share (0 to 1). Scores that are
not JSON numbers are skipped, as a mean skips them (``sextant.schemas.filters.number_of``);
scores outside the scale are not: they count on the side of the threshold they fall, as the
gateway's survey reads count them. ``sum_sq`` is then that of the values, so a window carries
what the normal interval of the score needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sextant.schemas.config import SURVEY_KINDS, MetricKind
from sextant.schemas.sketches import (
    HLL_REGISTERS,
    Centroid,
    Sparse,
    digest_quantile,
    hll_estimate_from_histogram,
    hll_histogram,
)

__all__ = [
    "DETRACTOR_UP_TO",
    "PROMOTER_FROM",
    "Components",
    "metric_value",
    "metric_volume",
    "response_value",
    "response_value_sql",
    "unique_users",
    "unique_users_of",
]

PROMOTER_FROM = 9
"""The lowest NPS score of a promoter."""
DETRACTOR_UP_TO = 6
"""The highest NPS score of a detractor."""


_MEANS = (MetricKind.MEAN, *SURVEY_KINDS)


@dataclass(frozen=True, slots=True)
class Components:
    """A window's components (its points merged, for a total or one breakdown value)."""

    count: int = 0
    sum: float = 0.0
    denominator: int = 0
    users: float | None = 0.0
    """Unique users: the registers' estimate, None when unknown (see :func:`unique_users`)."""
    centroids: Sequence[Centroid] = ()


def unique_users(count: int, histogram: Sequence[int]) -> float | None:
    """The estimate from a window's register rank histogram
    (:func:`sextant.schemas.sketches.hll_histogram`); None (unknown) when the window has events
    but no register."""
    if count and (not histogram or histogram[0] >= HLL_REGISTERS):
        return None
    return hll_estimate_from_histogram(histogram) if histogram else 0.0


def unique_users_of(count: int, sparse: Sparse) -> float | None:
    """:func:`unique_users` of sparse registers."""
    return unique_users(count, hll_histogram(sparse))


def metric_value(kind: MetricKind, components: Components, quantile: float = 0.5) -> float | None:
    """The metric's value (see the module's table)."""
    c = components
    if kind is MetricKind.COUNT:
        return float(c.count)
    if kind is MetricKind.SUM:
        return c.sum
    if kind in _MEANS:
        return c.sum / c.count if c.count else None
    if kind is MetricKind.UNIQUE_USERS:
        return None if c.users is None else float(round(c.users))
    if kind is MetricKind.CONVERSION:
        return c.count / c.denominator if c.denominator else None
    found = digest_quantile(c.centroids, quantile)
    return None if math.isnan(found) else found


def metric_volume(kind: MetricKind, components: Components) -> float:
    """How much the value rests on: events, A users for a conversion, users for unique users
    (rules hold back below a minimum volume)."""
    if kind is MetricKind.CONVERSION:
        return float(components.denominator)
    if kind is MetricKind.UNIQUE_USERS:
        return metric_value(kind, components) or 0.0
    return float(components.count)


def response_value(kind: MetricKind, score: float, satisfied_from: float) -> float:
    """What one survey response adds to an ``nps`` or ``csat`` window (see the module)."""
    if kind is MetricKind.NPS:
        return 100.0 * ((score >= PROMOTER_FROM) - (score <= DETRACTOR_UP_TO))
    return float(score >= satisfied_from)


def response_value_sql(kind: MetricKind, score: str, satisfied_from: str) -> str:
    """SQL of :func:`response_value`: ``score`` a Nullable(Float64) expression (NULL stays
    NULL), ``satisfied_from`` a placeholder or literal."""
    if kind is MetricKind.NPS:
        return (
            f"(100 * (toFloat64({score} >= {PROMOTER_FROM})"
            f" - toFloat64({score} <= {DETRACTOR_UP_TO})))"
        )
    return f"toFloat64({score} >= {satisfied_from})"

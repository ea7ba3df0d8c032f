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
=================  ==============================================  ==================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sextant.schemas.config import MetricKind
from sextant.schemas.sketches import (
    HLL_REGISTERS,
    Centroid,
    Sparse,
    digest_quantile,
    hll_estimate_from_histogram,
    hll_histogram,
)

__all__ = ["Components", "metric_value", "metric_volume", "unique_users", "unique_users_of"]


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
    if kind is MetricKind.MEAN:
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

"""Sufficient statistics of an experiment metric: what every read-out is computed from.

Each unit of a variant has, for one metric, four numbers:

=======  ====================================================================
``x``    the metric after the unit's first exposure (a ratio's numerator)
``y``    a ratio metric's denominator after exposure (0 for other metrics)
``x_pre``  ``x`` over the pre-exposure look-back window (the CUPED covariate)
``y_pre``  ``y`` over the same window
=======  ====================================================================

:class:`SufficientStatistics` holds, per variant and metric, the unit count and the sums of
these four and of every product of two of them (the first and second moments): from these,
and nothing else, come the means, the Welch and delta-method tests, the CUPED regression
(pooled θ, adjusted means and variances) for mean and ratio metrics, the sequential
intervals and the Bayesian read-out. The sums are additive, so partial statistics (a
partition's, a day's) merge with ``+``; a unit with no events adds nothing but its count, so
``n`` is the variant's exposed units and every unit without pre-exposure data counts with
``x_pre = y_pre = 0`` (as GrowthBook does).

The gateway computes them from the events table, and the processor streams exactly this
structure (:class:`ExperimentMetricStatistics`); the gateway reads either.
Quantile metrics have no sufficient statistics: they are computed from the events table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MOMENT_FIELDS",
    "STATISTICS_COLUMNS",
    "EffectPrior",
    "ExperimentMetricStatistics",
    "SufficientStatistics",
]

MOMENT_FIELDS = (
    "sum_x",
    "sum_x_sq",
    "sum_y",
    "sum_y_sq",
    "sum_xy",
    "sum_x_pre",
    "sum_x_pre_sq",
    "sum_y_pre",
    "sum_y_pre_sq",
    "sum_x_pre_y_pre",
    "sum_x_x_pre",
    "sum_x_y_pre",
    "sum_y_x_pre",
    "sum_y_y_pre",
)
"""The sums of :class:`SufficientStatistics`, in a fixed order (SQL columns, wire order)."""


class SufficientStatistics(BaseModel):
    """Per variant and metric: ``n`` units and the sums over them (see the module's table).

    ``units_with_pre`` counts the units that had any event in the pre-exposure window; it
    takes no part in the statistics (those units and the others are all in ``n``), it tells a
    reader how much of the variant the covariate describes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int = Field(default=0, ge=0)
    sum_x: float = 0.0
    sum_x_sq: float = Field(default=0.0, ge=0)
    sum_y: float = 0.0
    sum_y_sq: float = Field(default=0.0, ge=0)
    sum_xy: float = 0.0
    sum_x_pre: float = 0.0
    sum_x_pre_sq: float = Field(default=0.0, ge=0)
    sum_y_pre: float = 0.0
    sum_y_pre_sq: float = Field(default=0.0, ge=0)
    sum_x_pre_y_pre: float = 0.0
    sum_x_x_pre: float = 0.0
    sum_x_y_pre: float = 0.0
    sum_y_x_pre: float = 0.0
    sum_y_y_pre: float = 0.0
    units_with_pre: int = Field(default=0, ge=0)

    def __add__(self, other: SufficientStatistics) -> SufficientStatistics:
        """The statistics of the union of two disjoint sets of units."""
        values = {name: getattr(self, name) + getattr(other, name) for name in MOMENT_FIELDS}
        return SufficientStatistics(
            n=self.n + other.n, units_with_pre=self.units_with_pre + other.units_with_pre, **values
        )

    def sums(self) -> tuple[float, ...]:
        """The sums in :data:`MOMENT_FIELDS` order."""
        return tuple(getattr(self, name) for name in MOMENT_FIELDS)

    @classmethod
    def of_units(
        cls,
        x: Sequence[float],
        y: Sequence[float] | None = None,
        x_pre: Sequence[float] | None = None,
        y_pre: Sequence[float] | None = None,
        has_pre: Sequence[bool] | None = None,
    ) -> SufficientStatistics:
        """The statistics of units given one value each (absent columns are zeros).

        Sums are exact to the last bit the inputs allow (``math.fsum``); ``has_pre``
        defaults to "any non-zero pre-exposure value".
        """
        n = len(x)
        zeros = [0.0] * n
        ys, xs_pre, ys_pre = (list(c) if c is not None else zeros for c in (y, x_pre, y_pre))
        if not len(ys) == len(xs_pre) == len(ys_pre) == n:
            raise ValueError("every column needs one value per unit")
        columns = {"x": list(x), "y": ys, "x_pre": xs_pre, "y_pre": ys_pre}

        def total(a: str, b: str | None = None) -> float:
            first = columns[a]
            if b is None:
                return math.fsum(first)
            return math.fsum(p * q for p, q in zip(first, columns[b], strict=True))

        if has_pre is None:
            has_pre = [p != 0 or q != 0 for p, q in zip(xs_pre, ys_pre, strict=True)]
        return cls(
            n=n,
            sum_x=total("x"),
            sum_x_sq=total("x", "x"),
            sum_y=total("y"),
            sum_y_sq=total("y", "y"),
            sum_xy=total("x", "y"),
            sum_x_pre=total("x_pre"),
            sum_x_pre_sq=total("x_pre", "x_pre"),
            sum_y_pre=total("y_pre"),
            sum_y_pre_sq=total("y_pre", "y_pre"),
            sum_x_pre_y_pre=total("x_pre", "y_pre"),
            sum_x_x_pre=total("x", "x_pre"),
            sum_x_y_pre=total("x", "y_pre"),
            sum_y_x_pre=total("y", "x_pre"),
            sum_y_y_pre=total("y", "y_pre"),
            units_with_pre=sum(1 for flag in has_pre if flag),
        )


class ExperimentMetricStatistics(BaseModel):
    """The statistics of one variant of one experiment for one metric, as of a moment.

    What the processor streams (topic ``experiment_statistics``): one record per source
    partition of ``events.raw``, since a unit's events are all on one partition, and the
    reader adds the partitions' records up. Keyed
    ``project_id:experiment:metric:variant:source_partition``; a higher ``version`` (the
    offset of the last event the partition applied) replaces a lower one. ``metric`` is
    ``""`` on the record that only counts the variant's units (``statistics.n``).
    ``lookback_days`` is the pre-exposure window the ``*_pre`` sums cover (0: none
    collected). ``fingerprint`` names the experiment and metric definitions the sums follow
    (:func:`sextant.schemas.experiment_stream.statistics_fingerprint`); ``tracked_after`` is
    the event time the partition had reached when it began following them (None: before any
    event of the project), so a reader knows whether earlier events are missing.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    project_id: str
    experiment: str
    metric: str
    variant: str
    lookback_days: int = Field(default=0, ge=0)
    statistics: SufficientStatistics
    as_of: datetime
    source_partition: int = Field(default=0, ge=0)
    partitions: int = Field(default=1, ge=1)
    """Partitions of ``events.raw``: a reader needs a record from each."""
    version: int = -1
    fingerprint: str = ""
    tracked_after: datetime | None = None
    multi_variant_units: int = Field(default=0, ge=0)
    """Units of the partition exposed to several variants (left out of every variant)."""

    def kafka_key(self) -> str:
        return (
            f"{self.project_id}:{self.experiment}:{self.metric}:{self.variant}"
            f":{self.source_partition}"
        )

    def to_row(self) -> dict[str, Any]:
        """The record as one flat row (:data:`STATISTICS_COLUMNS`)."""
        row = self.model_dump(mode="json", exclude={"statistics"})
        return row | self.statistics.model_dump()

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ExperimentMetricStatistics:
        sums = {name: row[name] for name in _STATISTICS_FIELDS}
        rest = {name: row[name] for name in cls.model_fields if name != "statistics"}
        return cls(statistics=SufficientStatistics(**sums), **rest)


_STATISTICS_FIELDS = tuple(SufficientStatistics.model_fields)
STATISTICS_COLUMNS = (
    *(name for name in ExperimentMetricStatistics.model_fields if name != "statistics"),
    *_STATISTICS_FIELDS,
)
"""The ``experiment_statistics`` table's columns: :class:`ExperimentMetricStatistics`, flat."""


class EffectPrior(BaseModel):
    """A proper Gaussian prior on a metric's relative lift (``N(mean, stddev²)``).

    GrowthBook's prior: on the relative effect, rescaled by the control mean for the
    absolute read-out. Without one the Bayesian read-out uses the flat (improper) prior,
    whose posterior is the data's Gaussian.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mean: float = 0.0
    stddev: float = Field(default=0.3, gt=0)
    scale: Literal["relative"] = "relative"

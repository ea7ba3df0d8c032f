"""Records the processor derives from events: metric window points, exposures, alert transitions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sextant.schemas.sketches import HLL_LEGACY_DENSE_REGISTERS, hll_is_sparse


class MetricPoint(BaseModel):
    """One metric's aggregate for one event-time window (and one breakdown value).

    Components are additive so minutes roll up to hours and days: ``count``, ``sum`` and
    ``sum_sq`` exactly; ``hll`` (sparse HyperLogLog registers) and ``digest`` (t-digest
    centroids) by merging sketches (both defined in :mod:`sextant.schemas.sketches`). A window
    is re-emitted with a higher ``version`` whenever it changes (including late corrections);
    the newest version replaces the older ones.
    """

    model_config = ConfigDict(frozen=True)

    project_id: str
    metric: str
    window_start: datetime
    window_seconds: int = 60
    breakdown: str = ""
    count: int = 0
    sum: float = 0.0
    sum_sq: float = 0.0
    denominator: int = 0
    hll: list[int] = Field(default_factory=list)
    digest: list[tuple[float, float]] = Field(default_factory=list)
    version: int = 0
    emitted_at: datetime

    @field_validator("hll")
    @classmethod
    def _sparse_registers(cls, hll: list[int]) -> list[int]:
        """The dense 2**14 registers of points emitted before the sparse form cannot become
        2**16 ones: such a point keeps its components and loses its sketch, as the rows
        migration 0006 changed did."""
        if hll_is_sparse(hll):
            return hll
        if len(hll) == HLL_LEGACY_DENSE_REGISTERS:
            return []
        raise ValueError("not sparse HyperLogLog registers (sextant.schemas.sketches)")

    def kafka_key(self) -> str:
        return f"{self.project_id}:{self.metric}"


class Exposure(BaseModel):
    """The first time a unit saw an experiment, and which variation it saw."""

    model_config = ConfigDict(frozen=True)

    project_id: str
    experiment: str
    unit_id: str
    variation_id: str
    timestamp: datetime
    message_id: str
    multi_variant: bool = False

    def kafka_key(self) -> str:
        return f"{self.project_id}:{self.experiment}:{self.unit_id}"


class AlertState(StrEnum):
    OK = "ok"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"
    NO_DATA = "no_data"
    ERROR = "error"


class AlertTransition(BaseModel):
    """A rule moving from one state to another; emitted exactly once per transition."""

    model_config = ConfigDict(frozen=True)

    transition_id: str
    project_id: str
    rule_id: str
    episode_id: str
    from_state: AlertState
    to_state: AlertState
    at: datetime
    value: float | None = None
    threshold: float | None = None
    severity: str = "warning"
    message: str = ""

    def kafka_key(self) -> str:
        return f"{self.project_id}:{self.rule_id}"


class SinkDeadLetter(BaseModel):
    """A record the warehouse refused for good, kept with the reason instead of blocking."""

    source_topic: str
    partition: int
    offset: int
    reason: str
    value: str
    failed_at: datetime

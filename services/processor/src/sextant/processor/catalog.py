"""The config plane as the processor reads it: compiled metrics by project and event name.

The index is rebuilt whenever a config document changes (the follower thread calls the
listener) and swapped in whole, so the event loop always reads a consistent snapshot and a new,
changed or deleted definition takes effect on the next event.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from sextant.core.config_plane import ConfigState
from sextant.processor.definitions import CompiledMetric, compile_metric
from sextant.processor.experiment_stats import ExperimentPlan
from sextant.schemas.config import (
    ConfigDocument,
    Experiment,
    MetricDefinition,
    PersonDeletion,
    Project,
)
from sextant.schemas.experiment_stream import statistics_fingerprint, streamed_metrics

DEFAULT_LATENESS_SECONDS: int = Project.model_fields["allowed_lateness_seconds"].default


class ConfigCatalog:
    """A :class:`~sextant.processor.partition.Catalog` following a :class:`ConfigState`."""

    def __init__(self, state: ConfigState) -> None:
        self._state = state
        self._lock = threading.Lock()
        self._by_event: dict[tuple[str, str], list[CompiledMetric]] = {}
        self._metrics: dict[str, dict[str, CompiledMetric]] = {}
        self._lateness: dict[str, int] = {}
        self._units: dict[tuple[str, str], str] = {}
        self._plans: dict[tuple[str, str], ExperimentPlan] = {}
        self.generation = 0
        """Grows with every rebuild (the streamed statistics follow the plans by it)."""
        self._junk: dict[str, frozenset[str]] = {}
        self._deletions: list[PersonDeletion] = []
        self.rebuild()
        state.subscribe(self._on_change)

    def _on_change(self, key: str, document: ConfigDocument | None) -> None:
        del key, document
        self.rebuild()

    def rebuild(self) -> None:
        by_event: dict[tuple[str, str], list[CompiledMetric]] = defaultdict(list)
        metrics: dict[str, dict[str, CompiledMetric]] = defaultdict(dict)
        for definition in self._state.of_kind(MetricDefinition):
            compiled = compile_metric(definition)
            metrics[definition.project_id][definition.id] = compiled
            by_event[(definition.project_id, definition.event)].append(compiled)
            conversion = definition.conversion_event
            if conversion is not None and conversion != definition.event:
                by_event[(definition.project_id, conversion)].append(compiled)
        projects = self._state.of_kind(Project)
        lateness = {p.id: p.allowed_lateness_seconds for p in projects}
        junk = {
            p.id: frozenset(i.strip().casefold() for i in p.identity_junk_ids)
            for p in projects
            if p.identity_junk_ids
        }
        units: dict[tuple[str, str], str] = {
            (e.project_id, e.id): e.unit for e in self._state.of_kind(Experiment)
        }
        plans = _plans(self._state.of_kind(Experiment), self._state.of_kind(MetricDefinition))
        deletions = sorted(self._state.of_kind(PersonDeletion), key=lambda d: d.requested_at)
        with self._lock:
            self._by_event = dict(by_event)
            self._metrics = dict(metrics)
            self._lateness = lateness
            self._units = units
            self._plans = plans
            self._junk = junk
            self._deletions = deletions
            self.generation += 1

    def experiment_plans(self) -> dict[tuple[str, str], ExperimentPlan]:
        """The experiments whose statistics the processor streams."""
        return self._plans

    def metrics_for(self, project_id: str, event: str) -> list[CompiledMetric]:
        return self._by_event.get((project_id, event), [])

    def metric(self, project_id: str, key: str) -> CompiledMetric | None:
        return self._metrics.get(project_id, {}).get(key)

    def lateness(self, project_id: str) -> int:
        return self._lateness.get(project_id, DEFAULT_LATENESS_SECONDS)

    def lateness_by_project(self) -> dict[str, int]:
        return dict(self._lateness)

    def junk_ids(self, project_id: str) -> frozenset[str]:
        """The project's own ids that are never merged (case-folded)."""
        return self._junk.get(project_id, frozenset())

    def exposure_unit(self, project_id: str, experiment: str) -> str | None:
        return self._units.get((project_id, experiment))

    def person_deletions(self) -> list[PersonDeletion]:
        """Every person's deletion on the config plane, oldest first."""
        return self._deletions


def _plans(
    experiments: list[Experiment], definitions: list[MetricDefinition]
) -> dict[tuple[str, str], ExperimentPlan]:
    by_project: dict[str, dict[str, MetricDefinition]] = defaultdict(dict)
    for definition in definitions:
        by_project[definition.project_id][definition.id] = definition
    plans = {}
    for experiment in experiments:
        metrics = by_project[experiment.project_id]
        streamed = streamed_metrics(experiment, metrics)
        if isinstance(streamed, str):
            continue
        plans[(experiment.project_id, experiment.id)] = ExperimentPlan.of(
            experiment.project_id,
            experiment.id,
            statistics_fingerprint(experiment, metrics),
            experiment.unit,
            [v.id for v in experiment.variants],
            experiment.cuped_lookback_days,
            experiment.start,
            experiment.stop,
            streamed,
        )
    return plans

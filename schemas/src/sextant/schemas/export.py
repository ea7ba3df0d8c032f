"""Export the JSON Schema of every contract model into ``schemas/json/`` (committed).

``python -m sextant.schemas.export`` rewrites the files; a test fails when they drift from the
models, so the published schema and the code cannot disagree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sextant.schemas.config import CONFIG_DOCUMENT
from sextant.schemas.events import Envelope, IncomingEvent, InvalidEvent
from sextant.schemas.identity import (
    DeletionProgress,
    IdentityDecision,
    IdentityEdge,
    PersonOverride,
)
from sextant.schemas.records import AlertTransition, Exposure, MetricPoint, SinkDeadLetter
from sextant.schemas.statistics import ExperimentMetricStatistics

JSON_DIR = Path(__file__).resolve().parents[3] / "json"
MODELS: dict[str, type[BaseModel]] = {
    "incoming_event": IncomingEvent,
    "envelope": Envelope,
    "invalid_event": InvalidEvent,
    "metric_point": MetricPoint,
    "exposure": Exposure,
    "experiment_metric_statistics": ExperimentMetricStatistics,
    "alert_transition": AlertTransition,
    "sink_dead_letter": SinkDeadLetter,
    "identity_edge": IdentityEdge,
    "person_override": PersonOverride,
    "identity_decision": IdentityDecision,
    "deletion_progress": DeletionProgress,
}


def schemas() -> dict[str, dict[str, Any]]:
    """Every exported schema by file stem, as the wire sees it (by alias)."""
    exported = {name: model.model_json_schema(by_alias=True) for name, model in MODELS.items()}
    exported["config_document"] = CONFIG_DOCUMENT.json_schema(by_alias=True)
    return exported


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    JSON_DIR.mkdir(exist_ok=True)
    for name, schema in schemas().items():
        (JSON_DIR / f"{name}.json").write_text(render(schema))
    sys.stdout.write(f"wrote {len(MODELS) + 1} schemas to {JSON_DIR}\n")


if __name__ == "__main__":
    main()

"""schemathesis against the running gateway: no request it can build gets a server error."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sextant.core.secrets import generate_secret_key
from sextant.schemas.config import Experiment, MetricDefinition, MetricKind, Variant
from tests.integration.test_gateway_harness import Harness, make_harness

DAY = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def harness(kafka_bootstrap: str, warehouse_root: Path) -> Iterator[Harness]:
    # A master key, as every deployment has: without one, alert rules with signed webhook
    # targets are refused with a 503 that names the missing setting (tested elsewhere).
    with make_harness(
        kafka_bootstrap,
        warehouse_root,
        config_visibility_seconds=2,
        secret_key=generate_secret_key(),
    ) as running:
        running.put_config(
            MetricDefinition(
                id="revenue",
                project_id="acme",
                metric_kind=MetricKind.SUM,
                event="Order Completed",
                property="revenue",
                breakdown="currency",
            ),
            MetricDefinition(
                id="signups",
                project_id="acme",
                metric_kind=MetricKind.UNIQUE_USERS,
                event="Signed Up",
            ),
            Experiment(
                id="new-checkout",
                project_id="acme",
                primary_metric="revenue",
                guardrail_metrics=["signups"],
                variants=[Variant(id="control", weight=0.5), Variant(id="one-page", weight=0.5)],
            ),
        )
        running.insert_events(
            [
                {
                    "event": "Order Completed",
                    "distinct_id": f"u{i}",
                    "timestamp": DAY + timedelta(minutes=i),
                    "properties": {"revenue": i, "currency": "EUR"},
                }
                for i in range(20)
            ]
        )
        running.insert_exposures(
            [
                {
                    "experiment": "new-checkout",
                    "unit_id": f"u{i}",
                    "variation_id": ("control", "one-page")[i % 2],
                    "timestamp": DAY,
                }
                for i in range(20)
            ]
        )
        running.insert_points(
            [
                {
                    "metric": "revenue",
                    "window_start": DAY,
                    "count": 3,
                    "sum": 30.0,
                    "breakdown": "EUR",
                }
            ]
        )
        yield running


def schemathesis_run(
    harness: Harness, secret_headers: dict[str, str], paths: str, exclude: str
) -> str:
    """Run the schemathesis command line against the live gateway; its output."""
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{harness.base_url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "10",
        "--seed",
        "20250301",
        "--request-timeout",
        "30",
        "--include-path-regex",
        paths,
        "--exclude-path-regex",
        exclude,
        "-H",
        f"Authorization:{secret_headers['Authorization']}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    return output


def _tested(output: str) -> int:
    """How many operations schemathesis selected, having checked it tested every one."""
    selected = re.search(r"Selected: (\d+)/\d+", output)
    tested = re.search(r"Tested: (\d+)", output)
    assert selected, output[-3000:]
    assert tested, output[-3000:]
    assert tested[1] == selected[1], output[-3000:]
    return int(tested[1])


def test_no_read_request_gets_a_server_error(harness: Harness) -> None:
    # The live stream never ends by itself; it has tests of its own.
    output = schemathesis_run(
        harness, harness.read, r"^/(v1|healthz|readyz|metrics)", r"(^/v1/admin)|(/live$)"
    )
    assert _tested(output) >= 25


def test_no_admin_request_gets_a_server_error(harness: Harness) -> None:
    output = schemathesis_run(harness, harness.admin, r"^/v1/admin", r"^$")
    assert _tested(output) >= 50

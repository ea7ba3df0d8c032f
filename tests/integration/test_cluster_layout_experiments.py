"""The gateway's experiment results (exposures joined with events, CUPED, SRM), unchanged,
against stand-in tables made from the ClickHouse cluster form of the migrations
(``tests/cluster_layout.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster_layout import migrate_standin
from tests.integration.test_gateway_experiments import (  # the same tests, run here
    METRICS,
    test_a_lopsided_split_is_flagged_and_its_verdicts_invalid,
    test_definitions_list_the_projects_experiments_with_an_etag,
    test_few_units_are_too_early_and_missing_metrics_are_named,
    test_results_match_the_statistics_of_the_raw_units,
    test_results_of_an_experiment_without_exposures,
)
from tests.integration.test_gateway_harness import Harness, make_harness


@pytest.fixture(scope="module")
def harness(kafka_bootstrap: str, warehouse_root: Path) -> Iterator[Harness]:
    with make_harness(kafka_bootstrap, warehouse_root, migrate_with=migrate_standin) as running:
        running.put_config(*METRICS)
        yield running


__all__ = [
    "test_a_lopsided_split_is_flagged_and_its_verdicts_invalid",
    "test_definitions_list_the_projects_experiments_with_an_etag",
    "test_few_units_are_too_early_and_missing_metrics_are_named",
    "test_results_match_the_statistics_of_the_raw_units",
    "test_results_of_an_experiment_without_exposures",
]

"""The gateway's series, trend, funnel, retention and alert queries, unchanged, against stand-in
tables made from the ClickHouse cluster form of the migrations (``tests/cluster_layout.py``):
the tables the Distributed tables of a cluster would present, by name and column."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster_layout import migrate_standin
from tests.integration.test_gateway_harness import Harness, make_harness
from tests.integration.test_gateway_queries import (  # the same tests, run here
    METRICS,
    funnel_events,
    test_alert_history_pages_newest_first,
    test_an_event_stored_twice_counts_once,
    test_funnel_breakdown_and_step_filters,
    test_funnel_counts_conversions_and_median_times,
    test_insight_bodies_are_validated,
    test_mean_and_conversion_are_ratios_of_summed_components,
    test_percentiles_pool_the_digests,
    test_query_limits_answer_with_a_clear_error,
    test_retention_by_day,
    test_series_sums_minutes_and_takes_the_newest_version,
    test_series_validates_its_parameters,
    test_sketches_of_breakdown_values_merge_into_the_total,
    test_trend_breakdown_keeps_the_top_values_and_folds_the_rest,
    test_trend_counts_per_interval,
    test_trend_filters,
    test_unique_users_merge_sketches_instead_of_adding_minutes,
    trend_events,
)


@pytest.fixture(scope="module")
def harness(kafka_bootstrap: str, warehouse_root: Path) -> Iterator[Harness]:
    with make_harness(kafka_bootstrap, warehouse_root, migrate_with=migrate_standin) as running:
        running.put_config(*METRICS)
        yield running


__all__ = [
    "funnel_events",
    "test_alert_history_pages_newest_first",
    "test_an_event_stored_twice_counts_once",
    "test_funnel_breakdown_and_step_filters",
    "test_funnel_counts_conversions_and_median_times",
    "test_insight_bodies_are_validated",
    "test_mean_and_conversion_are_ratios_of_summed_components",
    "test_percentiles_pool_the_digests",
    "test_query_limits_answer_with_a_clear_error",
    "test_retention_by_day",
    "test_series_sums_minutes_and_takes_the_newest_version",
    "test_series_validates_its_parameters",
    "test_sketches_of_breakdown_values_merge_into_the_total",
    "test_trend_breakdown_keeps_the_top_values_and_folds_the_rest",
    "test_trend_counts_per_interval",
    "test_trend_filters",
    "test_unique_users_merge_sketches_instead_of_adding_minutes",
    "trend_events",
]

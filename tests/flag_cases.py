"""GrowthBook's conformance cases for flags, as Sextant's evaluators (Python and the browser
SDK's module) run them: which sections apply, and which cases are left out and why."""

from __future__ import annotations

from typing import Any

from tests.assignment_vectors import CASES

UNSUPPORTED_FEATURE_CASES = frozenset(
    name for name, *_ in CASES["feature"] if name.startswith("CB rule")
)
"""Contextual bandits (``contextualBanditRef``): Sextant has none, and skips such rules as
GrowthBook SDKs older than bandits do."""


def run_cases() -> list[list[Any]]:
    """``run`` cases without URL targeting, QA mode or a disabled context (options of
    GrowthBook's client object, not of the payload)."""
    return [
        row
        for row in CASES["run"]
        if "url" not in row[1] and not row[1].get("qaMode") and row[1].get("enabled", True)
    ]


def feature_cases() -> list[list[Any]]:
    return [row for row in CASES["feature"] if row[0] not in UNSUPPORTED_FEATURE_CASES]

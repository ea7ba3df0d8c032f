"""Sextant's flag evaluator against GrowthBook's conformance suite (evalCondition, feature,
run, decrypt; hashing has its own tests in test_assignment.py)."""

from __future__ import annotations

from typing import Any

import pytest

from sextant.schemas.conditions import eval_condition, padded_version
from sextant.schemas.flags import decrypt, evaluate, run_experiment
from tests.assignment_vectors import CASES
from tests.flag_cases import UNSUPPORTED_FEATURE_CASES, feature_cases, run_cases


def test_the_suite_has_the_sections() -> None:
    assert len(CASES["evalCondition"]) > 200
    assert len(feature_cases()) >= 50
    assert len(UNSUPPORTED_FEATURE_CASES) <= 5
    assert len(run_cases()) >= 50


@pytest.mark.parametrize("case", CASES["evalCondition"], ids=[c[0] for c in CASES["evalCondition"]])
def test_eval_condition(case: list[Any]) -> None:
    _, condition, attributes, expected, *groups = case
    assert eval_condition(attributes, condition, groups[0] if groups else None) is expected


@pytest.mark.parametrize("case", feature_cases(), ids=[c[0] for c in feature_cases()])
def test_feature(case: list[Any]) -> None:
    _, context, key, expected = case
    result = evaluate(
        context.get("features", {}),
        key,
        context.get("attributes", {}),
        saved_groups=context.get("savedGroups"),
        forced_variations=context.get("forcedVariations"),
    )
    got = {
        "value": result.value,
        "on": result.on,
        "off": result.off,
        "source": result.source,
        "ruleId": result.rule_id,
    }
    assert got == {k: expected[k] for k in got}
    assert (result.experiment is not None) == ("experimentResult" in expected)
    if result.experiment is not None:
        e, want = result.experiment, expected["experimentResult"]
        assert {
            "variationId": e.variation_id,
            "inExperiment": e.in_experiment,
            "hashUsed": e.hash_used,
            "hashAttribute": e.hash_attribute,
            "hashValue": e.hash_value,
            "key": e.key,
            "value": e.value,
        } == {
            k: want[k]
            for k in (
                "variationId",
                "inExperiment",
                "hashUsed",
                "hashAttribute",
                "hashValue",
                "key",
                "value",
            )
        }
        if "bucket" in want:
            assert e.bucket == want["bucket"]


@pytest.mark.parametrize("case", run_cases(), ids=[c[0] for c in run_cases()])
def test_run(case: list[Any]) -> None:
    _, context, experiment, value, in_experiment, hash_used = case
    result = run_experiment(
        experiment,
        context.get("attributes", {}),
        features=context.get("features"),
        saved_groups=context.get("savedGroups"),
        forced_variations=context.get("forcedVariations"),
    )
    assert (result.value, result.in_experiment, result.hash_used) == (
        value,
        in_experiment,
        hash_used,
    )


@pytest.mark.parametrize("case", CASES["decrypt"], ids=[c[0] for c in CASES["decrypt"]])
def test_decrypt(case: list[Any]) -> None:
    _, encrypted, key, expected = case
    if expected is None:
        with pytest.raises(ValueError, match="does not open"):
            decrypt(encrypted, key)
    else:
        assert decrypt(encrypted, key) == expected


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("1.9.2", "1.10.0"),
        ("1.0.0-beta", "1.0.0"),
        ("v2.0.0", "2.0.1"),
        ("1.0.0-rc.1", "1.0.0-rc.2"),
    ],
)
def test_versions_compare_in_version_order(lower: str, higher: str) -> None:
    assert padded_version(lower) < padded_version(higher)
    assert eval_condition({"v": higher}, {"v": {"$vgt": lower}})
    assert not eval_condition({"v": lower}, {"v": {"$vgte": higher}})

"""The browser SDK's script-tag bundle assigns in Chromium exactly as the Python assignment.

The page loads ``sdk/js/dist/sextant-experiments.min.js`` (built by ``make setup``) from a
static site and runs, inside Chromium's JavaScript engine, every GrowthBook conformance case
of the assignment functions, the non-ASCII vectors the Python side is tested with, and
``assign`` over the experiments and units whose expectations come straight from
``sextant.schemas.assignment``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page

from sextant.schemas.assignment import (
    choose_variation,
    get_bucket_ranges,
    get_equal_weights,
    hash_value,
    in_namespace,
)
from tests.browser.site import static_site
from tests.unit.test_assignment import NON_ASCII_VECTORS
from tests.unit.test_js_sdk_vectors import assign_vectors

REPO = Path(__file__).parents[2]
BUNDLE = REPO / "sdk" / "js" / "dist" / "sextant-experiments.min.js"
CASES: dict[str, Any] = json.loads(
    (REPO.parent / "shared" / "testdata" / "growthbook-cases.json").read_text(encoding="utf-8")
)

# Runs every case in the page; returns the raw results for Python to compare.
RUN_CASES = """
(cases) => {
  const s = window.sextant;
  return {
    library: s.LIBRARY,
    hash: cases.hash.map(([seed, value, version]) => s.hashValue(seed, value, version)),
    nonAscii: cases.nonAscii.map(([seed, value, version]) => s.hashValue(seed, value, version)),
    getBucketRange: cases.getBucketRange.map(([, [n, coverage, weights]]) =>
      s.getBucketRanges(n, coverage, weights)),
    chooseVariation: cases.chooseVariation.map(([, n, ranges]) => s.chooseVariation(n, ranges)),
    inNamespace: cases.inNamespace.map(([, id, ns]) => s.inNamespace(id, ns)),
    getEqualWeights: cases.getEqualWeights.map(([n]) => s.getEqualWeights(n)),
    assign: cases.assign.map((e) => e.units.map((unit) =>
      s.assign(e.key, unit, e.weights, e.coverage, e.seed, e.hashVersion))),
  };
}
"""


def _rounded(ranges: list[list[float]] | list[tuple[float, float]]) -> list[list[float]]:
    return [[round(a, 6), round(b, 6)] for a, b in ranges]


@pytest.fixture
def page(browser_context: BrowserContext, tmp_path: Path) -> Page:
    if not BUNDLE.exists():
        pytest.fail(f"{BUNDLE} is missing: run `make setup` (npm ci and npm run build in sdk/js)")
    shutil.copy(BUNDLE, tmp_path / BUNDLE.name)
    (tmp_path / "index.html").write_text(
        f'<!doctype html><title>assignment</title><script src="{BUNDLE.name}"></script>\n'
    )
    with static_site(tmp_path) as origin:
        page = browser_context.new_page()
        page.goto(f"{origin}/index.html")
        return page


def test_bundle_assigns_as_python(page: Page) -> None:
    vectors = assign_vectors()
    results = page.evaluate(
        RUN_CASES,
        {
            "hash": CASES["hash"],
            "nonAscii": [list(v) for v in NON_ASCII_VECTORS],
            "getBucketRange": CASES["getBucketRange"],
            "chooseVariation": CASES["chooseVariation"],
            "inNamespace": CASES["inNamespace"],
            "getEqualWeights": CASES["getEqualWeights"],
            "assign": vectors,
        },
    )

    assert results["library"]["name"] == "@sextant/browser"
    # GrowthBook's expected values, and the same from the Python implementation.
    for (seed, value, version, expected), got in zip(CASES["hash"], results["hash"], strict=True):
        assert got == expected == hash_value(seed, value, version), (seed, value, version)
    for (seed, value, version, expected), got in zip(
        NON_ASCII_VECTORS, results["nonAscii"], strict=True
    ):
        assert got == expected == hash_value(seed, value, version), (seed, value, version)
    for (name, (n, coverage, weights), expected), got in zip(
        CASES["getBucketRange"], results["getBucketRange"], strict=True
    ):
        python = get_bucket_ranges(n, coverage, weights)
        assert _rounded(got) == _rounded(expected) == _rounded(python), name
    for (name, n, ranges, expected), got in zip(
        CASES["chooseVariation"], results["chooseVariation"], strict=True
    ):
        assert got == expected == choose_variation(n, [(a, b) for a, b in ranges]), name
    for (name, user_id, (ns, start, end), expected), got in zip(
        CASES["inNamespace"], results["inNamespace"], strict=True
    ):
        assert got is expected is in_namespace(user_id, (ns, start, end)), name
    for (n, expected), got in zip(
        CASES["getEqualWeights"], results["getEqualWeights"], strict=True
    ):
        assert [round(w, 8) for w in got] == expected == [round(w, 8) for w in get_equal_weights(n)]
    for vector, got in zip(vectors, results["assign"], strict=True):
        assert got == vector["expected"], vector["key"]

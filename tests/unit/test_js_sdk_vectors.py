"""The browser SDK's test vectors (sdk/js/test/*.json) say what the Python assignment says.

The JavaScript tests cannot import Python, so the vectors they check the TypeScript port
against are files; these tests keep the files equal to ``sextant.schemas.assignment`` and to
the non-ASCII vectors of ``test_assignment``. Regenerate them with
``uv run python -m tests.unit.test_js_sdk_vectors``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sextant.schemas.assignment import assign
from tests.unit.test_assignment import NON_ASCII_VECTORS

JS_TEST_DIR = Path(__file__).parents[2] / "sdk" / "js" / "test"
NON_ASCII_FILE = JS_TEST_DIR / "non-ascii-vectors.json"
ASSIGN_FILE = JS_TEST_DIR / "assign-vectors.json"

# (key, weights, coverage, seed, hash version): the experiments test_assignment checks
# against the growthbook package, and an anonymousId-style seedless one.
EXPERIMENTS: list[tuple[str, list[float], float, str | None, int]] = [
    ("checkout-v2", [0.5, 0.5], 1.0, None, 2),
    ("pricing", [0.2, 0.3, 0.5], 0.7, "pricing-seed", 2),
    ("onboarding", [0.25, 0.25, 0.25, 0.25], 0.35, "🚀", 2),
    ("legacy-exp", [0.1, 0.9], 1.0, None, 1),
    ("bad-weights", [0.7, 0.6], 0.8, "x", 1),
]
UNITS = [f"user-{i}" for i in range(60)] + [
    "ünïcode",
    "😀-user",
    "12345",
    "用户-42",
    "пользователь",
    "e\u0301",
    "\u00e9",
    "👩\u200d💻",
    "",
]


def non_ascii_vectors() -> list[list[Any]]:
    return [list(vector) for vector in NON_ASCII_VECTORS]


def assign_vectors() -> list[dict[str, Any]]:
    """Each experiment with the variant index (or null) of every unit."""
    return [
        {
            "key": key,
            "weights": weights,
            "coverage": coverage,
            "seed": seed,
            "hashVersion": version,
            "units": UNITS,
            "expected": [assign(key, unit, weights, coverage, seed, version) for unit in UNITS],
        }
        for key, weights, coverage, seed, version in EXPERIMENTS
    ]


def _dump(value: Any) -> str:
    return json.dumps(value, indent=1) + "\n"


def test_non_ascii_vectors_file_is_current() -> None:
    assert json.loads(NON_ASCII_FILE.read_text(encoding="utf-8")) == non_ascii_vectors()


def test_assign_vectors_file_is_current() -> None:
    assert json.loads(ASSIGN_FILE.read_text(encoding="utf-8")) == assign_vectors()


def main() -> None:
    NON_ASCII_FILE.write_text(_dump(non_ascii_vectors()), encoding="utf-8")
    ASSIGN_FILE.write_text(_dump(assign_vectors()), encoding="utf-8")
    print(f"wrote {NON_ASCII_FILE} and {ASSIGN_FILE}")


if __name__ == "__main__":
    main()

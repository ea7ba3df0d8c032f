"""Assignment vectors shared by the unit tests and the check of the SDK's installed wheel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CASES_PATH = Path(__file__).parents[1].parent / "shared" / "testdata" / "growthbook-cases.json"
CASES: dict[str, Any] = json.loads(CASES_PATH.read_text(encoding="utf-8"))
"""GrowthBook's cross-SDK conformance cases (``hash``, ``getBucketRange`` …)."""

# Expected values come from the GrowthBook JS SDK's hash (`hashFnv32a`, which
# loops over `str.charCodeAt(i)`), run under Node.js, not from sextant.schemas.assignment.
NON_ASCII_VECTORS: list[tuple[str, str, int, float]] = [
    ("seed", "😀-user", 2, 0.3956),
    ("seed", "😀-user", 1, 0.057),
    ("", "é", 1, 0.94),
    ("", "é", 2, 0.8917),
    ("exp-1", "Zoë", 2, 0.2306),
    ("exp-1", "Zoë", 1, 0.88),
    ("checkout", "用户-42", 2, 0.0612),
    ("checkout", "用户-42", 1, 0.813),
    ("checkout", "пользователь", 2, 0.1846),
    ("🚀", "user-1", 2, 0.7431),
    ("🚀", "user-1", 1, 0.657),
    ("seed", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", 2, 0.0515),
    ("seed", "👩\u200d💻", 2, 0.8243),
    ("seed", "e\u0301", 2, 0.331),  # decomposed é: not normalised
    ("seed", "\u00e9", 2, 0.8663),  # precomposed é
]
"""(seed, value, hash version, expected hash) for ids beyond ASCII, surrogate pairs included."""

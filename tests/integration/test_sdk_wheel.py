"""The SDK stands on its own: installed into a fresh virtual environment, without any other
package of the repository, it assigns as GrowthBook's SDKs do and sends valid batches.

Two ways in, as users take them: the wheel built by ``uv build`` and installed by ``uv pip``,
and ``pip install sdk/python``. Each environment runs ``sdk_wheel_check.py`` once; the tests
below read its answers. uv's and pip's caches keep this to seconds.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sextant.collector.dialects import segment_batch
from sextant.schemas.events import EXPERIMENT_VIEWED, IncomingEvent
from tests.assignment_vectors import CASES, NON_ASCII_VECTORS
from tests.flag_cases import UNSUPPORTED_FEATURE_CASES

REPO = Path(__file__).resolve().parents[2]
SDK = REPO / "sdk" / "python"
CHECK = Path(__file__).with_name("sdk_wheel_check.py")
UV = os.environ.get("UV") or shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
FORBIDDEN = {"numpy", "jsonschema", "chdb", "sextant-schemas"}


def _run(*command: str | Path, stdin: str | None = None) -> str:
    # The workspace's environment must not leak into the fresh one.
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    done = subprocess.run(
        [str(part) for part in command],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=240,
    )
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _uv_wheel(root: Path) -> Path:
    """``uv build --wheel``, then ``uv pip install`` of the wheel into a new environment."""
    _run(UV, "build", "--quiet", "--wheel", "--out-dir", root / "dist", SDK)
    (wheel,) = (root / "dist").glob("sextant_sdk-*.whl")
    _run(UV, "venv", "--quiet", "--python", sys.executable, root / "venv")
    python = root / "venv" / "bin" / "python"
    _run(UV, "pip", "install", "--quiet", "--python", python, wheel)
    return python


def _pip_directory(root: Path) -> Path:
    """``pip install sdk/python`` into a new environment, as a user of the repository would."""
    _run(UV, "venv", "--quiet", "--seed", "--python", sys.executable, root / "venv")
    python = root / "venv" / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", SDK)
    return python


@pytest.fixture(scope="module", params=["uv-wheel", "pip-directory"])
def installed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """What ``sdk_wheel_check.py`` reports from an environment holding only the SDK."""
    root = tmp_path_factory.mktemp(request.param)
    python = _uv_wheel(root) if request.param == "uv-wheel" else _pip_directory(root)
    vectors = dict(CASES) | {"nonAscii": NON_ASCII_VECTORS}
    # -I: neither the environment's PYTHON* variables nor this folder reach the check.
    answer = _run(python, "-I", CHECK, stdin=json.dumps(vectors))
    report: dict[str, Any] = json.loads(answer)
    report["site"] = str(root / "venv")
    return report


def _rounded(ranges: list[list[float]]) -> list[list[float]]:
    return [[round(a, 6), round(b, 6)] for a, b in ranges]


# --- What the environment holds -----------------------------------------------------------


def test_only_the_sdk_and_light_dependencies_are_installed(installed: Any) -> None:
    distributions = set(installed["distributions"])
    assert "sextant-sdk" in distributions
    assert {"httpx", "orjson", "pydantic"} <= distributions
    assert not distributions & FORBIDDEN
    assert not [d for d in distributions if d.startswith("sextant-") and d != "sextant-sdk"]


def test_the_shared_modules_come_from_the_wheel_and_only_the_light_ones(installed: Any) -> None:
    for module, path in installed["files"].items():
        assert path.startswith(installed["site"]), (module, path)
    assert installed["config_module_present"] is False
    assert installed["heavy_modules_loaded"] == []


# --- GrowthBook's conformance cases and the non-ASCII vectors, run by the installed SDK ---


def test_every_conformance_section_was_run(installed: Any) -> None:
    for section in ("hash", "getBucketRange", "chooseVariation", "getEqualWeights", "inNamespace"):
        assert len(installed["vectors"][section]) == len(CASES[section]) > 0, section
    assert len(installed["vectors"]["nonAscii"]) == len(NON_ASCII_VECTORS)


@pytest.mark.parametrize(
    ("index", "case"), list(enumerate(CASES["hash"])), ids=[repr(c[:3]) for c in CASES["hash"]]
)
def test_hash(installed: Any, index: int, case: list[Any]) -> None:
    assert installed["vectors"]["hash"][index] == case[3]


@pytest.mark.parametrize(
    ("index", "case"),
    list(enumerate(CASES["getBucketRange"])),
    ids=[c[0] for c in CASES["getBucketRange"]],
)
def test_get_bucket_range(installed: Any, index: int, case: list[Any]) -> None:
    assert _rounded(installed["vectors"]["getBucketRange"][index]) == _rounded(case[2])


@pytest.mark.parametrize(
    ("index", "case"),
    list(enumerate(CASES["chooseVariation"])),
    ids=[c[0] for c in CASES["chooseVariation"]],
)
def test_choose_variation(installed: Any, index: int, case: list[Any]) -> None:
    assert installed["vectors"]["chooseVariation"][index] == case[3]


@pytest.mark.parametrize(
    ("index", "case"),
    list(enumerate(CASES["getEqualWeights"])),
    ids=[f"n={c[0]}" for c in CASES["getEqualWeights"]],
)
def test_get_equal_weights(installed: Any, index: int, case: list[Any]) -> None:
    assert [round(w, 8) for w in installed["vectors"]["getEqualWeights"][index]] == case[1]


@pytest.mark.parametrize(
    ("index", "case"),
    list(enumerate(CASES["inNamespace"])),
    ids=[c[0] for c in CASES["inNamespace"]],
)
def test_in_namespace(installed: Any, index: int, case: list[Any]) -> None:
    assert installed["vectors"]["inNamespace"][index] is case[3]


@pytest.mark.parametrize(
    ("index", "case"),
    list(enumerate(NON_ASCII_VECTORS)),
    ids=[repr(c[:3]) for c in NON_ASCII_VECTORS],
)
def test_non_ascii_hash(installed: Any, index: int, case: tuple[str, str, int, float]) -> None:
    assert installed["vectors"]["nonAscii"][index] == case[3]


# --- A client with the write key alone -----------------------------------------------------


def test_a_client_sends_a_batch_the_collector_accepts(installed: Any) -> None:
    smoke = installed["smoke"]
    basic = "Basic " + base64.b64encode(b"wk_smoke:").decode()
    seen = {(r["method"], r["url"], r["authorization"]) for r in smoke["requests"]}
    assert seen == {
        ("GET", "http://collector.test/v1/experiments/definitions", basic),
        ("POST", "http://collector.test/v1/batch", basic),
        # The client key is the credential of the features payload, in its path.
        ("GET", "http://collector.test/api/features/sdk-smoke", None),
    }
    batches = [r for r in smoke["requests"] if r["method"] == "POST"]

    events = [event for b in batches for event in segment_batch(b["body"]).events]
    valid = [IncomingEvent.model_validate(event) for event in events]
    assert [(e.type, e.event, e.user_id) for e in valid] == [
        ("track", "Order Completed", "user-42"),
        ("track", EXPERIMENT_VIEWED, "😀-user"),
    ]
    assert valid[0].message_id == smoke["message_id"]
    assert valid[0].properties == {"revenue": 39.5, "café": "☕"}
    # The hash of "😀-user" with seed "seed" is 0.3956: the first half of a 50/50 split.
    assert smoke["variant"] == "control"
    assert valid[1].properties == {"experiment_id": "checkout", "variation_id": "control"}
    assert smoke["invalid_track_problems"] == ["event"]
    assert smoke["flushed"] is True
    stats = smoke["stats"]
    assert (stats["queued"], stats["delivered"], stats["rejected"], stats["failed"]) == (2, 2, 0, 0)


@pytest.mark.parametrize(
    ("index", "case"),
    list(enumerate(CASES["evalCondition"])),
    ids=[c[0] for c in CASES["evalCondition"]],
)
def test_eval_condition(installed: Any, index: int, case: list[Any]) -> None:
    assert installed["vectors"]["evalCondition"][index] is case[3]


@pytest.mark.parametrize(
    ("index", "case"),
    [(i, c) for i, c in enumerate(CASES["feature"]) if c[0] not in UNSUPPORTED_FEATURE_CASES],
    ids=[c[0] for c in CASES["feature"] if c[0] not in UNSUPPORTED_FEATURE_CASES],
)
def test_feature(installed: Any, index: int, case: list[Any]) -> None:
    value, source = installed["vectors"]["feature"][index]
    assert [value, source] == [case[3]["value"], case[3]["source"]]


def test_features_are_evaluated_from_the_client_keys_payload(installed: Any) -> None:
    assert installed["smoke"]["feature_on"] == [True, False]
    urls = [r["url"] for r in installed["smoke"]["requests"]]
    assert "http://collector.test/api/features/sdk-smoke" in urls

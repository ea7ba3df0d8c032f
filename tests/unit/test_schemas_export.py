from __future__ import annotations

from sextant.schemas.export import JSON_DIR, render, schemas


def test_committed_json_schemas_match_the_models() -> None:
    """Run `make schemas` after changing a contract model."""
    for name, schema in schemas().items():
        path = JSON_DIR / f"{name}.json"
        assert path.exists(), f"{path} missing: run `make schemas`"
        assert path.read_text() == render(schema), f"{path} drifted: run `make schemas`"

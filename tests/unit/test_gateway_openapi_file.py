from __future__ import annotations

from sextant.gateway.openapi_export import OPENAPI_FILE, REGENERATE, document, render


def test_committed_openapi_document_matches_the_gateway() -> None:
    """The workspace's TypeScript types are generated from this file: a response model that
    changes without it would leave the pages reading fields the API no longer has."""
    assert OPENAPI_FILE.exists(), f"{OPENAPI_FILE} missing: run `{REGENERATE}`"
    committed = OPENAPI_FILE.read_text(encoding="utf-8")
    assert committed == render(document()), (
        f"{OPENAPI_FILE} differs from the gateway's OpenAPI document: run `{REGENERATE}` "
        "and commit it with the regenerated web/src/api-schema.ts"
    )

"""The workspace's static files: served with a strict policy, assets by hashed name only."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from sextant.gateway import dashboard


def _get(path: str) -> httpx.Response:
    app = FastAPI()
    app.include_router(dashboard.router)

    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            return await http.get(path)

    return asyncio.run(fetch())


@pytest.fixture
def static(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text(
        '<script type="module" src="/assets/workspace-0123456789.js"></script>'
    )
    (tmp_path / "assets" / "workspace-0123456789.js").write_text("console.log(1)")
    (tmp_path / "assets" / "secret.txt").write_text("no")
    monkeypatch.setattr(dashboard, "STATIC", tmp_path)
    return tmp_path


def test_the_page_is_served_uncached_under_a_strict_policy(static: Path) -> None:
    response = _get("/")
    assert response.status_code == 200
    assert "workspace-0123456789.js" in response.text
    assert response.headers["cache-control"] == "no-store"
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy


def test_assets_by_hashed_name_only(static: Path) -> None:
    response = _get("/assets/workspace-0123456789.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert "immutable" in response.headers["cache-control"]
    assert _get("/assets/secret.txt").status_code == 404
    assert _get("/assets/..%2Findex.html").status_code == 404


def test_an_unbuilt_workspace_says_how_to_build_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard, "STATIC", tmp_path / "missing")
    response = _get("/")
    assert response.status_code == 503
    assert "make setup" in response.text

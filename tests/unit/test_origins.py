"""A project's allowed origins: the pattern forms, and what each lets through."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sextant.schemas.config import Project
from sextant.schemas.origins import origin_allowed


@pytest.mark.parametrize(
    ("patterns", "origin", "allowed"),
    [
        (["https://app.example.com"], "https://app.example.com", True),
        (["https://app.example.com"], "HTTPS://App.Example.com", True),
        (["https://app.example.com"], "https://app.example.com:443", True),
        (["https://app.example.com"], "http://app.example.com", False),
        (["https://app.example.com"], "https://app.example.com:8443", False),
        (["https://app.example.com"], "https://evil-app.example.com", False),
        (["https://*.example.com"], "https://a.example.com", True),
        (["https://*.example.com"], "https://a.b.example.com", True),
        (["https://*.example.com"], "https://example.com", False),
        (["https://*.example.com"], "https://notexample.com", False),
        (["https://*.example.com"], "https://a.example.com.evil.io", False),
        (["http://localhost:*"], "http://localhost:5173", True),
        (["http://localhost:*"], "http://localhost", True),
        (["http://localhost:*"], "http://localhost.evil.io:80", False),
        (["http://[::1]:*"], "http://[::1]:3000", True),
        (["*"], "https://anything.example", True),
        (["*"], "null", True),
        (["https://app.example.com"], "null", False),
        ([], "https://app.example.com", False),
        (["capacitor://localhost"], "capacitor://localhost", True),
    ],
)
def test_origin_patterns(patterns: list[str], origin: str, allowed: bool) -> None:
    assert origin_allowed(patterns, origin) is allowed


@pytest.mark.parametrize(
    "pattern",
    ["example.com", "https://example.com/path", "https://*example.com", "https://a.com:99999", ""],
)
def test_a_project_refuses_a_pattern_that_is_not_an_origin(pattern: str) -> None:
    with pytest.raises(ValidationError, match="allowed_origins"):
        Project(id="p", project_id="p", name="P", allowed_origins=[pattern])

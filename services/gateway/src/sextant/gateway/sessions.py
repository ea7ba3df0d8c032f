"""Sessions of people signed in to the workspace: a signed cookie, and the checks around it.

The cookie holds the account's id, its ``session_generation`` when the session began, and an
expiry, signed with HMAC-SHA256 under a key derived from the master key
(``SEXTANT_SECRET_KEY``). Nothing is stored per session, so every gateway replica accepts a
session any replica began; the account document (followed by every replica) ends them:
disabling the account, or raising its generation (sign-out everywhere), refuses every older
session at once. Rotating the master key ends every session too.

Cross-site request forgery: a write authenticated by the cookie must come from a page of
the workspace itself: its ``Origin`` header (which browsers send with every cross-origin
request and with same-origin writes) must be the workspace's origin. The cookie is also
``SameSite=Lax``, so other sites' pages never send it with their writes in the first place.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request, Response

from sextant.core.secrets import SecretBox

SESSION_COOKIE = "sextant_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_VERSION = "v1"


@dataclass(frozen=True)
class Session:
    account_id: str
    generation: int
    expires_at: float
    """Unix time."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signs and reads short documents (sessions, single sign-on state) for one purpose."""

    def __init__(self, box: SecretBox, purpose: str) -> None:
        self._key = box.derive(f"sextant.gateway.{purpose}")

    def sign(self, body: dict[str, Any]) -> str:
        payload = _b64(orjson.dumps(body))
        return f"{_VERSION}.{payload}.{self._mac(payload)}"

    def read(self, token: str) -> dict[str, Any] | None:
        """The signed body, or None when ``token`` is malformed, altered or expired (a body's
        ``exp``, Unix time)."""
        version, _, rest = token.partition(".")
        payload, _, mac = rest.partition(".")
        # Bytes: compare_digest refuses strings with characters beyond ASCII.
        if version != _VERSION or not hmac.compare_digest(
            mac.encode(), self._mac(payload).encode()
        ):
            return None
        try:
            body = orjson.loads(_unb64(payload))
        except (orjson.JSONDecodeError, binascii.Error, ValueError):
            return None
        if not isinstance(body, dict) or not isinstance(body.get("exp"), int | float):
            return None
        return body if body["exp"] > time.time() else None

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())


def new_session_token(signer: Signer, account_id: str, generation: int, max_age_s: int) -> str:
    return signer.sign(
        {
            "sub": account_id,
            "gen": generation,
            "exp": int(time.time()) + max_age_s,
            # Two sign-ins in one second still get different cookies.
            "sid": secrets.token_urlsafe(12),
        }
    )


def read_session(signer: Signer, token: str) -> Session | None:
    body = signer.read(token)
    if body is None:
        return None
    account_id, generation = body.get("sub"), body.get("gen")
    if not isinstance(account_id, str) or not isinstance(generation, int):
        return None
    return Session(account_id, generation, float(body["exp"]))


def expected_origin(request: Request, public_url: str | None) -> str:
    """The workspace's origin: the configured public address, else the request's own."""
    if public_url:
        return public_url.rstrip("/").lower()
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}".lower()


def same_origin(request: Request, public_url: str | None) -> bool:
    """Whether a request comes from a page of the workspace itself (its ``Origin``)."""
    origin = request.headers.get("origin")
    return origin is not None and origin.lower() == expected_origin(request, public_url)


def uses_https(request: Request, public_url: str | None) -> bool:
    if public_url:
        return public_url.lower().startswith("https://")
    return request.url.scheme == "https"


def set_cookie(
    response: Response,
    request: Request,
    public_url: str | None,
    name: str,
    value: str,
    max_age_s: int,
) -> None:
    """An HttpOnly, SameSite=Lax cookie for the whole site; Secure over https."""
    response.set_cookie(
        name,
        value,
        max_age=max_age_s,
        path="/",
        httponly=True,
        samesite="lax",
        secure=uses_https(request, public_url),
    )


def clear_cookie(response: Response, request: Request, public_url: str | None, name: str) -> None:
    response.delete_cookie(
        name, path="/", httponly=True, samesite="lax", secure=uses_https(request, public_url)
    )

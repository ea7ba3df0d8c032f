"""Single sign-on by OpenID Connect: the authorisation code flow with PKCE.

``authlib`` builds the authorisation request (``state``, ``nonce``, an S256 code challenge)
and exchanges the code (with its verifier); ``joserfc`` (authlib's own JOSE library) checks
the ID token's signature against the provider's published keys (JWKS, fetched again when a
token names a key not seen yet) and its claims: issuer, audience, expiry, and the nonce of
this very sign-in. State, nonce and verifier travel in a short-lived signed cookie, so the
callback may reach any gateway replica.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.integrations.base_client import OAuthError  # type: ignore[import-untyped]
from authlib.integrations.httpx_client import AsyncOAuth2Client  # type: ignore[import-untyped]
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from sextant.gateway.sessions import Signer
from sextant.gateway.settings import GatewaySettings

SSO_COOKIE = "sextant_sso"
SSO_COOKIE_SECONDS = 600
"""How long a person has to sign in at the provider."""
_SCOPE = "openid email profile"
_LEEWAY_S = 60


class SsoError(Exception):
    """The sign-in cannot complete; the message says why (shown to the person)."""


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in."""

    subject: str
    email: str
    email_verified: bool
    name: str


class OpenIdClient:
    """One relying party: the gateway, registered at the provider as ``oidc_client_id``."""

    def __init__(self, settings: GatewaySettings, signer: Signer) -> None:
        assert settings.oidc_issuer is not None
        self.issuer = settings.oidc_issuer.rstrip("/")
        self.client_id = settings.oidc_client_id
        secret = settings.oidc_client_secret
        self._client_secret = secret.get_secret_value() if secret else None
        self._signer = signer
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None

    def _oauth(self, redirect_uri: str) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            self.client_id,
            self._client_secret,
            scope=_SCOPE,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=10,
        )

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (fetched once)."""
        if self._metadata is None:
            document = await _get_json(f"{self.issuer}/.well-known/openid-configuration")
            if str(document.get("issuer", "")).rstrip("/") != self.issuer:
                raise SsoError("the provider's discovery document names another issuer")
            self._metadata = document
        return self._metadata

    async def begin(self, redirect_uri: str) -> tuple[str, str]:
        """The provider's authorisation URL to send the person to, and the signed cookie
        that remembers this sign-in's state, nonce and PKCE verifier."""
        metadata = await self.metadata()
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(64)
        async with self._oauth(redirect_uri) as oauth:
            url, _ = oauth.create_authorization_url(
                metadata["authorization_endpoint"],
                state=state,
                nonce=nonce,
                code_verifier=verifier,
            )
        pending = {
            "state": state,
            "nonce": nonce,
            "verifier": verifier,
            "exp": int(time.time()) + SSO_COOKIE_SECONDS,
        }
        return str(url), self._signer.sign(pending)

    async def finish(self, code: str, state: str, cookie: str, redirect_uri: str) -> Identity:
        """Exchange ``code`` and check the ID token; :class:`SsoError` says what failed."""
        pending = self._signer.read(cookie) if cookie else None
        if pending is None:
            raise SsoError("this sign-in expired or began in another browser: start again")
        if not hmac.compare_digest(str(pending.get("state")), state):
            raise SsoError("the provider answered for another sign-in (state mismatch)")
        metadata = await self.metadata()
        try:
            async with self._oauth(redirect_uri) as oauth:
                token = await oauth.fetch_token(
                    metadata["token_endpoint"],
                    code=code,
                    code_verifier=pending["verifier"],
                )
        except (OAuthError, httpx.HTTPError) as error:
            raise SsoError(f"the provider refused the code: {error}") from error
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise SsoError("the provider sent no ID token")
        claims = await self._verified_claims(id_token, str(pending["nonce"]))
        return Identity(
            subject=str(claims["sub"]),
            email=str(claims.get("email", "")).strip().lower(),
            email_verified=claims.get("email_verified") is True,
            name=str(claims.get("name", "")),
        )

    async def _verified_claims(self, id_token: str, nonce: str) -> dict[str, Any]:
        try:
            try:
                decoded = jwt.decode(id_token, await self._key_set())
            except JoseError:
                # A key the provider rotated in since the keys were fetched: fetch them again.
                decoded = jwt.decode(id_token, await self._key_set(refresh=True))
            claims: dict[str, Any] = dict(decoded.claims)
            jwt.JWTClaimsRegistry(
                leeway=_LEEWAY_S,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.client_id},
                sub={"essential": True},
                exp={"essential": True},
                iat={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(claims)
        except (JoseError, ValueError) as error:
            raise SsoError(f"the ID token is not valid: {error}") from error
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.client_id:
            raise SsoError("the ID token was issued to another party (azp)")
        return claims

    async def _key_set(self, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            metadata = await self.metadata()
            self._keys = KeySet.import_key_set(await _get_json(metadata["jwks_uri"]))  # type: ignore[arg-type]
        return self._keys


async def _get_json(url: str) -> dict[str, Any]:
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.get(url)
            answer.raise_for_status()
            document = answer.json()
    except (httpx.HTTPError, ValueError) as error:
        raise SsoError(f"the provider cannot be reached: {error}") from error
    if not isinstance(document, dict):
        raise SsoError(f"the provider's {url} is not a JSON object")
    return document

"""Single sign-on by OpenID Connect: the authorisation code flow with PKCE.

``authlib``'s protocol functions build the authorisation request (``state``, ``nonce``, an
S256 code challenge) and the code's exchange (with its verifier, the client authenticated
by HTTP Basic: ``client_secret_basic``), sent with httpx; ``joserfc`` (authlib's JOSE
library) checks the ID token's signature against the provider's published keys (JWKS,
fetched again when a token names a key not seen yet) and its claims: issuer, audience,
expiry, and the nonce of this very sign-in. Claims the ID token leaves out (email, name)
are read from the userinfo endpoint, for the same subject. State, nonce and verifier travel
in a short-lived signed cookie, so the callback may reach any gateway replica.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from authlib.oauth2.rfc6749.parameters import (  # type: ignore[import-untyped]
    prepare_grant_uri,
    prepare_token_request,
)
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]
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
_SIGNATURES = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
"""The ID token signatures accepted: a provider's public keys, never a shared secret or none."""


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
        url = prepare_grant_uri(
            metadata["authorization_endpoint"],
            self.client_id,
            "code",
            redirect_uri=redirect_uri,
            scope=_SCOPE,
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
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
        if not hmac.compare_digest(str(pending.get("state")).encode(), state.encode()):
            raise SsoError("the provider answered for another sign-in (state mismatch)")
        token = await self._exchange(code, str(pending["verifier"]), redirect_uri)
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise SsoError("the provider sent no ID token")
        claims = await self._verified_claims(id_token, str(pending["nonce"]))
        if "email" not in claims:
            claims |= await self._user_info(token, str(claims["sub"]))
        return Identity(
            subject=str(claims["sub"]),
            email=str(claims.get("email", "")).strip().lower(),
            email_verified=claims.get("email_verified") is True,
            name=str(claims.get("name", "")),
        )

    async def _exchange(self, code: str, verifier: str, redirect_uri: str) -> dict[str, Any]:
        """The provider's token response to the authorisation code."""
        metadata = await self.metadata()
        body = prepare_token_request(
            "authorization_code", code=code, redirect_uri=redirect_uri, code_verifier=verifier
        )
        # RFC 6749 §2.3.1: the id and secret are form-encoded before they are joined.
        auth = httpx.BasicAuth(
            quote(self.client_id, safe=""), quote(self._client_secret or "", safe="")
        )
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                answer = await client.post(
                    metadata["token_endpoint"], content=body, headers=headers, auth=auth
                )
            token = answer.json()
        except (httpx.HTTPError, ValueError) as error:
            raise SsoError(f"the provider cannot be reached: {error}") from error
        if answer.status_code != 200 or not isinstance(token, dict):
            reason = (
                token.get("error_description") or token.get("error")
                if isinstance(token, dict)
                else ""
            )
            raise SsoError(f"the provider refused the code: {reason or answer.status_code}")
        return token

    async def _user_info(self, token: dict[str, Any], subject: str) -> dict[str, Any]:
        """The person's claims from the userinfo endpoint (providers that keep the ID token
        small send email there), checked to be about the ID token's subject."""
        metadata = await self.metadata()
        access_token = token.get("access_token")
        if not isinstance(access_token, str) or "userinfo_endpoint" not in metadata:
            return {}
        info = await _get_json(
            metadata["userinfo_endpoint"], {"Authorization": f"Bearer {access_token}"}
        )
        if info.get("sub") != subject:
            raise SsoError("the provider's userinfo is about another person than its ID token")
        return {k: v for k, v in info.items() if k in ("email", "email_verified", "name")}

    async def _verified_claims(self, id_token: str, nonce: str) -> dict[str, Any]:
        try:
            return verified_claims(
                id_token, await self._key_set(), self.issuer, self.client_id, nonce
            )
        except SsoError:
            # A key the provider rotated in since the keys were fetched: fetch them again.
            keys = await self._key_set(refresh=True)
            return verified_claims(id_token, keys, self.issuer, self.client_id, nonce)

    async def _key_set(self, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            metadata = await self.metadata()
            self._keys = KeySet.import_key_set(await _get_json(metadata["jwks_uri"]))  # type: ignore[arg-type]
        return self._keys


def verified_claims(
    id_token: str, keys: KeySet, issuer: str, client_id: str, nonce: str
) -> dict[str, Any]:
    """The claims of ``id_token`` once its signature (by one of ``keys``, with a public-key
    algorithm) and its claims hold: issued by ``issuer`` to ``client_id`` for the sign-in
    that sent ``nonce``, not expired. :class:`SsoError` says what does not hold."""
    try:
        claims: dict[str, Any] = dict(jwt.decode(id_token, keys, _SIGNATURES).claims)
        jwt.JWTClaimsRegistry(
            leeway=_LEEWAY_S,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        ).validate(claims)
    except (JoseError, ValueError) as error:
        raise SsoError(f"the ID token is not valid: {error}") from error
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise SsoError("the ID token was issued to another party (azp)")
    return claims


async def _get_json(url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.get(url, headers=headers)
            answer.raise_for_status()
            document = answer.json()
    except (httpx.HTTPError, ValueError) as error:
        raise SsoError(f"the provider cannot be reached: {error}") from error
    if not isinstance(document, dict):
        raise SsoError(f"the provider's {url} is not a JSON object")
    return document

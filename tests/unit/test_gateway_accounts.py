"""People signing in, without infrastructure: password hashes, session cookies, the origin
check that stops cross-site writes, the lockout after failed sign-ins, and the checks of a
single sign-on's ID token."""

from __future__ import annotations

import time
from typing import Any

import pytest
from argon2 import PasswordHasher
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey
from pydantic import ValidationError
from starlette.requests import Request

from sextant.core.audit_log import audit_view
from sextant.core.secrets import SecretBox, generate_secret_key
from sextant.gateway.login_throttle import LoginThrottle
from sextant.gateway.passwords import check_password, hash_password, password_problem
from sextant.gateway.sessions import (
    Signer,
    new_session_token,
    read_session,
    same_origin,
    uses_https,
)
from sextant.gateway.sso import SsoError, verified_claims
from sextant.schemas.config import CONFIG_DOCUMENT, Account, Role
from tests.manual_clock import ManualClock

# --- passwords ------------------------------------------------------------------------------


def test_a_password_is_stored_as_an_argon2id_hash_that_only_it_opens() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert "correct horse battery" not in stored
    assert check_password(stored, "correct horse battery").matches
    assert not check_password(stored, "correct horse batterY").matches
    assert not check_password("", "").matches, "an account without a password opens for none"
    assert not check_password("not a hash", "x").matches


def test_a_hash_with_weaker_parameters_opens_and_asks_to_be_rehashed() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash("old password!")
    check = check_password(weak, "old password!")
    assert check.matches
    assert check.needs_rehash
    assert not check_password(hash_password("old password!"), "old password!").needs_rehash


def test_new_passwords_have_a_minimum_length() -> None:
    assert password_problem("short") is not None
    assert password_problem("long enough!") is None
    assert password_problem("x" * 2000) is not None


# --- session cookies ------------------------------------------------------------------------


def _signer(key: str | None = None, purpose: str = "session") -> Signer:
    return Signer(SecretBox([key or generate_secret_key()]), purpose)


def test_a_session_reads_back_only_unaltered_under_the_same_key_and_purpose() -> None:
    key = generate_secret_key()
    token = new_session_token(_signer(key), "ada", 3, max_age_s=60)
    session = read_session(_signer(key), token)
    assert session is not None
    assert (session.account_id, session.generation) == ("ada", 3)
    assert session.expires_at == pytest.approx(time.time() + 60, abs=2)

    version, payload, mac = token.split(".")
    forged = _signer(key).sign({"sub": "root", "gen": 3, "exp": time.time() + 60})
    assert read_session(_signer(key), f"{version}.{forged.split('.')[1]}.{mac}") is None
    assert read_session(_signer(key), f"{version}.{payload}.{mac[:-2]}AA") is None
    assert read_session(_signer(), token) is None, "another master key"
    assert read_session(_signer(key, "sso"), token) is None, "another purpose"
    assert read_session(_signer(key), "garbage") is None
    assert read_session(_signer(key), "v1.!!!.x") is None
    assert read_session(_signer(key), f"v1.{payload}.é") is None


def test_an_expired_session_is_refused() -> None:
    signer = _signer()
    token = signer.sign({"sub": "ada", "gen": 0, "exp": int(time.time()) - 1})
    assert read_session(signer, token) is None


def _request(method: str, headers: dict[str, str], scheme: str = "http") -> Request:
    return Request(
        {
            "type": "http",
            "method": method,
            "scheme": scheme,
            "path": "/v1/admin/accounts",
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "server": ("sextant.example.com", 443 if scheme == "https" else 80),
        }
    )


@pytest.mark.parametrize(
    ("headers", "public_url", "allowed"),
    [
        ({"host": "127.0.0.1:8081", "origin": "http://127.0.0.1:8081"}, None, True),
        ({"host": "127.0.0.1:8081", "origin": "http://evil.example"}, None, False),
        ({"host": "127.0.0.1:8081"}, None, False),  # no Origin: not provably ours
        ({"host": "127.0.0.1:8081", "origin": "null"}, None, False),
        # Behind a TLS proxy the configured public address is the origin.
        (
            {"host": "10.0.0.5:8081", "origin": "https://sextant.example.com"},
            "https://sextant.example.com",
            True,
        ),
        (
            {"host": "sextant.example.com", "origin": "http://sextant.example.com"},
            "https://sextant.example.com",
            False,
        ),
    ],
)
def test_cookie_writes_must_come_from_the_workspaces_own_origin(
    headers: dict[str, str], public_url: str | None, allowed: bool
) -> None:
    assert same_origin(_request("POST", headers), public_url) is allowed


def test_cookies_are_secure_when_the_workspace_is_served_over_https() -> None:
    assert uses_https(_request("GET", {}), "https://sextant.example.com")
    assert uses_https(_request("GET", {}, scheme="https"), None)
    assert not uses_https(_request("GET", {}), None)


# --- lockout --------------------------------------------------------------------------------


def test_repeated_failures_lock_one_account_from_one_address_for_the_period() -> None:
    clock = ManualClock(1000.0)
    throttle = LoginThrottle(max_failures=3, period_s=60, clock=clock)
    assert [throttle.failed("ada@x.io", "1.2.3.4") for _ in range(3)] == [False, False, True]
    assert throttle.locked_for("ada@x.io", "1.2.3.4") == pytest.approx(60)
    assert throttle.locked_for("ada@x.io", "5.6.7.8") == 0, "another address is not locked"
    assert throttle.locked_for("bob@x.io", "1.2.3.4") == 0, "another account is not locked"
    clock.now += 59
    assert throttle.locked_for("ada@x.io", "1.2.3.4") == pytest.approx(1)
    clock.now += 2
    assert throttle.locked_for("ada@x.io", "1.2.3.4") == 0


def test_failures_spread_beyond_the_period_or_cleared_by_a_success_do_not_lock() -> None:
    clock = ManualClock(1000.0)
    throttle = LoginThrottle(max_failures=3, period_s=60, clock=clock)
    for _ in range(4):
        assert not throttle.failed("ada@x.io", "1.2.3.4")
        clock.now += 31
    throttle.failed("ada@x.io", "1.2.3.4")
    throttle.succeeded("ada@x.io", "1.2.3.4")
    assert not throttle.failed("ada@x.io", "1.2.3.4")
    assert throttle.locked_for("ada@x.io", "1.2.3.4") == 0


# --- the account document -------------------------------------------------------------------


def test_an_account_is_one_config_document_kind_with_a_lower_case_email() -> None:
    account = CONFIG_DOCUMENT.validate_python(
        {"kind": "account", "id": "ada", "email": " Ada@Example.COM", "roles": {"shop": "owner"}}
    )
    assert isinstance(account, Account)
    assert account.email == "ada@example.com"
    assert account.config_key() == "account:*:ada"
    assert account.roles == {"shop": Role.OWNER}
    with pytest.raises(ValidationError):
        Account(id="ada", email="not an email")
    with pytest.raises(ValidationError):
        Account(id="ada", email="a@b.io", roles={"shop": "superuser"})  # type: ignore[dict-item]


def test_the_audit_log_never_shows_a_password_hash() -> None:
    account = Account(id="ada", email="ada@example.com", password_hash=hash_password("secret pw!"))
    shown = audit_view(account)
    assert shown is not None
    assert "password_hash" not in shown
    assert shown["password_set"] is True
    assert "argon2" not in str(shown)


# --- single sign-on: the ID token -----------------------------------------------------------

ISSUER = "https://idp.example"
CLIENT = "sextant-workspace"


def _provider_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})


def _id_token(key: Any, alg: str = "RS256", **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": CLIENT,
        "sub": "ada",
        "iat": now,
        "exp": now + 300,
        "nonce": "n-1",
        "email": "ada@corp.example",
    } | overrides
    header = {"alg": alg, "kid": "k1"}
    return jwt.encode(header, {k: v for k, v in claims.items() if v is not None}, key)


def _public(key: RSAKey) -> KeySet:
    return KeySet.import_key_set({"keys": [key.as_dict(private=False)]})  # type: ignore[typeddict-item]


def test_an_id_token_signed_by_the_provider_for_this_sign_in_is_accepted() -> None:
    key = _provider_key()
    claims = verified_claims(_id_token(key), _public(key), ISSUER, CLIENT, "n-1")
    assert (claims["sub"], claims["email"]) == ("ada", "ada@corp.example")


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"nonce": "n-2"}, "nonce"),  # a token of another sign-in (replayed)
        ({"nonce": None}, "nonce"),
        ({"aud": "another-client"}, "aud"),
        ({"iss": "https://evil.example"}, "iss"),
        ({"exp": int(time.time()) - 3600}, "exp"),
        ({"aud": [CLIENT, "other"], "azp": "other"}, "azp"),
    ],
)
def test_an_id_token_for_another_sign_in_client_or_issuer_or_expired_is_refused(
    overrides: dict[str, Any], why: str
) -> None:
    key = _provider_key()
    with pytest.raises(SsoError, match=why):
        verified_claims(_id_token(key, **overrides), _public(key), ISSUER, CLIENT, "n-1")


def test_an_id_token_not_signed_by_the_providers_keys_is_refused() -> None:
    key = _provider_key()
    with pytest.raises(SsoError):
        verified_claims(_id_token(_provider_key()), _public(key), ISSUER, CLIENT, "n-1")
    # A token "signed" with a shared secret (e.g. the client secret) is not the provider's.
    secret = OctKey.import_key("a shared secret of at least 32 bytes!!", {"kid": "k1"})
    with pytest.raises(SsoError):
        verified_claims(_id_token(secret, alg="HS256"), _public(key), ISSUER, CLIENT, "n-1")

"""Single sign-on through a real OpenID provider (``tests/oidc``): the authorisation code
flow with PKCE from the gateway's redirect to the session cookie, accounts matched by
verified email or created for an allowed domain, and what the gateway refuses."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

from sextant.gateway.sessions import SESSION_COOKIE
from sextant.gateway.sso import SSO_COOKIE
from sextant.schemas.config import Account, Role
from tests.infra import free_port
from tests.integration.accounts_support import SECRET_KEY
from tests.integration.test_gateway_admin import assert_problem
from tests.integration.test_gateway_harness import Harness, make_harness
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET, oidc_provider

PEOPLE: dict[str, dict[str, object]] = {
    "ada@corp.example": {"name": "Ada Lovelace", "email_verified": True},
    "new@corp.example": {"name": "New Starter", "email_verified": True},
    "unverified@corp.example": {"name": "Not Verified", "email_verified": False},
    "eve@elsewhere.example": {"name": "Eve", "email_verified": True},
}
ADA = Account(id="ada", email="ada@corp.example", roles={"acme": Role.EDITOR})


@pytest.fixture(scope="module")
def harness(
    kafka_bootstrap: str, warehouse_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    port = free_port()
    with make_harness(
        kafka_bootstrap,
        warehouse_root,
        secret_key=SECRET_KEY,
        oidc_issuer=f"http://127.0.0.1:{port}",
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
        oidc_allowed_domains=["corp.example"],
        oidc_default_roles={"acme": Role.VIEWER},
    ) as running:
        callback = f"{running.base_url}/v1/auth/sso/callback"
        log = tmp_path_factory.mktemp("oidc") / "provider.log"
        with oidc_provider(port, callback, PEOPLE, log):
            running.put_config(ADA)
            yield running


def _to_callback(browser: httpx.Client, email: str) -> str:
    """Start single sign-on at the gateway and sign in at the provider as ``email``; the
    callback URL the provider sends the browser back to (not yet followed)."""
    start = browser.get("/v1/auth/sso/login")
    assert start.status_code == 303, start.text
    url = start.headers["location"]
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert all(query[name] for name in ("nonce", "state", "code_challenge"))
    for _ in range(10):
        answer = browser.get(url)
        if answer.status_code == 200 and "<form" in answer.text:
            action = re.search(r'action="([^"]+)"', answer.text)
            assert action is not None
            answer = browser.post(urljoin(url, action.group(1)), data={"email": email})
        assert answer.status_code in (302, 303), answer.text
        url = urljoin(url, answer.headers["location"])
        if url.startswith(str(browser.base_url)):
            return url
    raise AssertionError("the provider never sent the browser back")


def _browser(harness: Harness) -> httpx.Client:
    return httpx.Client(base_url=harness.base_url, timeout=30)


def test_an_existing_account_signs_in_by_its_verified_email(harness: Harness) -> None:
    with _browser(harness) as browser:
        done = browser.get(_to_callback(browser, "ada@corp.example"))
        assert done.status_code == 303, done.text
        assert done.headers["location"] == "/#/outcomes"
        assert SESSION_COOKIE in browser.cookies
        me = browser.get("/v1/auth/me")
        assert me.status_code == 200, me.text
        assert me.json()["id"] == "ada"
        assert [(p["id"], p["role"]) for p in me.json()["projects"]] == [("acme", "editor")]
        assert browser.get("/v1/whoami").json()["role"] == "editor"
    entries = harness.client.get(
        "/v1/admin/audit",
        params={"action": "login.succeeded", "target": "account:*:ada"},
        headers=harness.admin,
    ).json()["items"]
    assert entries[0]["detail"] == "single sign-on"


def test_a_person_of_an_allowed_domain_gets_an_account_with_the_default_roles(
    harness: Harness,
) -> None:
    with _browser(harness) as browser:
        assert browser.get(_to_callback(browser, "new@corp.example")).status_code == 303
        me = browser.get("/v1/auth/me").json()
    assert me["email"] == "new@corp.example"
    assert me["display_name"] == "New Starter"
    assert [(p["id"], p["role"]) for p in me["projects"]] == [("acme", "viewer")]
    view = harness.client.get(f"/v1/admin/accounts/{me['id']}", headers=harness.admin).json()
    assert view["password_set"] is False


@pytest.mark.parametrize(
    ("email", "why"),
    [
        ("eve@elsewhere.example", "no account"),
        ("unverified@corp.example", "did not confirm"),
    ],
)
def test_an_unknown_domain_or_an_unverified_email_is_refused(
    harness: Harness, email: str, why: str
) -> None:
    with _browser(harness) as browser:
        refused = browser.get(_to_callback(browser, email))
        assert why in str(assert_problem(refused, 401)["detail"])
        assert SESSION_COOKIE not in browser.cookies


def test_a_callback_for_another_sign_in_or_browser_or_a_replayed_code_is_refused(
    harness: Harness,
) -> None:
    with _browser(harness) as browser:
        callback = _to_callback(browser, "ada@corp.example")
        forged_state = re.sub(r"state=[^&]+", "state=forged", callback)
        assert "state" in str(assert_problem(browser.get(forged_state), 401)["detail"])
        with _browser(harness) as other:
            assert_problem(other.get(callback), 401)  # no pending sign-in in that browser
        assert browser.get(callback).status_code == 303
        browser.cookies.delete(SESSION_COOKIE)
        # The provider accepts each code once; the gateway checks its answer.
        pending = harness.client.get("/v1/auth/sso/login").cookies[SSO_COOKIE]
        browser.cookies.set(SSO_COOKIE, pending)
        assert_problem(browser.get(callback), 401)
        assert SESSION_COOKIE not in browser.cookies

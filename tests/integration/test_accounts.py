"""People signing in to the workspace, through running gateways: sign-in and sign-out, the
session cookie, lockout, revocation on every replica, roles, the origin check, and the
accounts admin API with its audit trail."""

from __future__ import annotations

from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from sextant.gateway.app import create_app
from sextant.gateway.people import account_by_id
from sextant.gateway.sessions import SESSION_COOKIE
from sextant.schemas.config import Account, Role
from tests.infra import wait_for
from tests.integration.accounts_support import PASSWORD, SECRET_KEY, as_person, person, sign_in
from tests.integration.test_gateway_admin import assert_problem
from tests.integration.test_gateway_harness import Harness, make_harness, serve_in_thread

ADA = person("ada", {"acme": Role.EDITOR, "globex": Role.VIEWER})
VIV = person("viv", {"acme": Role.VIEWER})
ROOT = person("root", {}, org_admin=True)


@pytest.fixture(scope="module")
def harness(kafka_bootstrap: str, warehouse_root: Path) -> Iterator[Harness]:
    with make_harness(
        kafka_bootstrap,
        warehouse_root,
        secret_key=SECRET_KEY,
        login_max_failures=3,
        login_lockout_seconds=600,
    ) as running:
        running.put_config(ADA, VIV, ROOT)
        yield running


@pytest.fixture(scope="module")
def replica(harness: Harness) -> Iterator[httpx.Client]:
    """A second gateway on the same config topic and master key."""
    app = create_app(harness.settings)
    with serve_in_thread(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as client:
        wait_for(
            lambda: app.state.gateway.state.get(ROOT.config_key()), 20, message="replica config"
        )
        yield client


def _audit(harness: Harness, **filters: str) -> list[dict[str, Any]]:
    page = harness.client.get(
        "/v1/admin/audit", params=filters | {"limit": "1000"}, headers=harness.admin
    )
    assert page.status_code == 200, page.text
    items: list[dict[str, Any]] = page.json()["items"]
    return items


def test_signing_in_sets_a_protected_cookie_and_opens_the_persons_projects(
    harness: Harness,
) -> None:
    c = harness.client
    answer = c.post("/v1/auth/login", json={"email": "ADA@example.com", "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    assert answer.json()["email"] == "ada@example.com"
    assert [(p["id"], p["role"]) for p in answer.json()["projects"]] == [
        ("acme", "editor"),
        ("globex", "viewer"),
    ]
    cookie = SimpleCookie(answer.headers["set-cookie"])[SESSION_COOKIE]
    assert cookie["httponly"]
    assert cookie["samesite"] == "lax"
    assert not cookie["secure"], "served over plain http here"
    assert int(cookie["max-age"]) == harness.settings.session_max_age_seconds
    session = cookie.value

    me = c.get("/v1/auth/me", headers=as_person(harness.base_url, session))
    assert me.json()["id"] == "ada"
    # The read API answers for the project the person picks, with their role there.
    for project, role in (("acme", "editor"), ("globex", "viewer")):
        who = c.get("/v1/whoami", headers=as_person(harness.base_url, session, project))
        assert who.status_code == 200, who.text
        assert (who.json()["project_id"], who.json()["role"]) == (project, role)
    assert c.get("/v1/metrics", headers=as_person(harness.base_url, session, "acme")).is_success
    # Two projects and none picked: the person is told how to pick one.
    unpicked = c.get("/v1/metrics", headers=as_person(harness.base_url, session))
    assert "X-Sextant-Project" in str(assert_problem(unpicked, 403)["detail"])
    assert_problem(c.get("/v1/metrics", headers=as_person(harness.base_url, session, "nope")), 403)

    succeeded = _audit(harness, action="login.succeeded", target="account:*:ada")
    assert succeeded[0]["actor"] == {"kind": "person", "id": "account:*:ada", "name": "Ada"}
    assert succeeded[0]["source"] == "127.0.0.1"


def test_a_wrong_password_and_an_unknown_email_get_the_same_answer_and_are_audited(
    harness: Harness,
) -> None:
    c = harness.client
    wrong = c.post("/v1/auth/login", json={"email": "viv@example.com", "password": "not it!"})
    unknown = c.post("/v1/auth/login", json={"email": "nobody@example.com", "password": "x"})
    assert assert_problem(wrong, 401, "password")["detail"] == "wrong email or password"
    assert assert_problem(unknown, 401, "password")["detail"] == "wrong email or password"
    assert SESSION_COOKIE not in wrong.cookies
    failed = _audit(harness, action="login.failed")
    assert {e["detail"] for e in failed[:2]} == {"wrong password", "no such account"}
    assert all("not it!" not in str(e) for e in failed)
    assert_problem(c.post("/v1/auth/login", json={"email": "viv@example.com"}), 422, "password")


def test_repeated_failures_lock_the_account_out_from_that_address(harness: Harness) -> None:
    c = harness.client
    locked_person = person("locked", {"acme": Role.VIEWER})
    harness.put_config(locked_person)
    for _ in range(3):
        bad = c.post("/v1/auth/login", json={"email": "locked@example.com", "password": "guess"})
        assert_problem(bad, 401)
    # Now even the right password is refused, until the lockout ends.
    good = c.post("/v1/auth/login", json={"email": "locked@example.com", "password": PASSWORD})
    assert_problem(good, 429, "email")
    assert 0 < int(good.headers["retry-after"]) <= 601
    [entry] = _audit(harness, action="login.locked", target="account:*:locked")
    assert entry["source"] == "127.0.0.1"
    # Another account from the same address is not locked.
    sign_in(c, "viv@example.com")


def test_cookie_writes_need_the_workspaces_origin_and_keys_do_not(harness: Harness) -> None:
    c, base = harness.client, harness.base_url
    session = sign_in(c, "ada@example.com")
    metric = {"id": "from-ada", "metric_kind": "count", "event": "Paid"}
    url = "/v1/admin/projects/acme/metrics"
    no_origin = c.post(url, json=metric, headers=as_person(base, session, origin=False))
    assert "origin" in str(assert_problem(no_origin, 403)["detail"]).lower()
    foreign = as_person(base, session, origin=False) | {"Origin": "https://evil.example"}
    assert_problem(c.post(url, json=metric, headers=foreign), 403)
    assert c.get(url, headers=as_person(base, session, origin=False)).status_code == 200
    created = c.post(url, json=metric, headers=as_person(base, session))
    assert created.status_code == 201, created.text
    [entry] = _audit(harness, target="metric:acme:from-ada")
    assert entry["actor"]["id"] == "account:*:ada"
    # A key is not a cookie: a server-side client sends no Origin.
    assert c.delete(f"{url}/from-ada", headers=harness.admin).status_code == 204
    # A sign-in form posted from another site is refused too.
    forged_login = c.post(
        "/v1/auth/login",
        json={"email": "ada@example.com", "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert_problem(forged_login, 403)


def test_roles_decide_what_a_person_may_do_in_each_project(harness: Harness) -> None:
    c, base = harness.client, harness.base_url
    session = sign_in(c, "ada@example.com")
    metric = {"id": "by-role", "metric_kind": "count", "event": "Paid"}
    # Editor in acme, viewer in globex: the path's project decides, never the header.
    in_globex = as_person(base, session, "acme")
    assert_problem(c.post("/v1/admin/projects/globex/metrics", json=metric, headers=in_globex), 403)
    assert_problem(c.get("/v1/admin/projects/acme/keys", headers=as_person(base, session)), 403)
    assert_problem(c.get("/v1/admin/accounts", headers=as_person(base, session)), 403)
    denied = _audit(harness, action="access.denied", actor="account:*:ada")
    assert any("globex" in e["target"] for e in denied)


def test_disabling_an_account_ends_its_sessions_on_every_replica(
    harness: Harness, replica: httpx.Client
) -> None:
    c, base = harness.client, harness.base_url
    victim = person("leaver", {"acme": Role.VIEWER})
    harness.put_config(victim)
    session = sign_in(replica, "leaver@example.com")
    headers = as_person(base, session)
    # A session begun on one replica works on the other.
    assert c.get("/v1/metrics", headers=headers).status_code == 200
    disabled = c.patch("/v1/admin/accounts/leaver", json={"disabled": True}, headers=harness.admin)
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["disabled"] is True
    assert_problem(c.get("/v1/metrics", headers=headers), 401)
    wait_for(
        lambda: replica.get("/v1/metrics", headers=headers).status_code == 401,
        10,
        message="the replica refuses the disabled account's session",
    )
    refused = replica.post(
        "/v1/auth/login", json={"email": "leaver@example.com", "password": PASSWORD}
    )
    assert_problem(refused, 401)


def test_signing_out_everywhere_ends_every_session_of_the_account(
    harness: Harness, replica: httpx.Client
) -> None:
    c, base = harness.client, harness.base_url
    first, second = sign_in(c, "viv@example.com"), sign_in(replica, "viv@example.com")
    out = c.post("/v1/auth/logout", json={}, headers=as_person(base, first))
    assert out.status_code == 204
    cleared = SimpleCookie(out.headers["set-cookie"])[SESSION_COOKIE]
    assert cleared.value == "" or int(cleared["max-age"]) == 0
    # Signing out here leaves the other device signed in, until "everywhere".
    assert c.get("/v1/auth/me", headers=as_person(base, second)).status_code == 200
    everywhere = c.post(
        "/v1/auth/logout", json={"everywhere": True}, headers=as_person(base, second)
    )
    assert everywhere.status_code == 204
    wait_for(
        lambda: replica.get("/v1/auth/me", headers=as_person(base, first)).status_code == 401,
        10,
        message="every session ended on the replica",
    )
    assert_problem(c.get("/v1/auth/me", headers=as_person(base, second)), 401)
    logouts = _audit(harness, action="logout", target="account:*:viv")
    assert logouts[0]["detail"] == "every session"
    sign_in(c, "viv@example.com")  # a new sign-in works


def test_the_accounts_admin_api_never_shows_a_password_and_is_audited(harness: Harness) -> None:
    c, base = harness.client, harness.base_url
    root = as_person(base, sign_in(c, "root@example.com"))
    body = {
        "id": "grace",
        "email": "Grace@Example.com",
        "display_name": "Grace",
        "password": "another long password",
        "roles": {"acme": "owner"},
    }
    created = c.post("/v1/admin/accounts", json=body, headers=root)
    assert created.status_code == 201, created.text
    assert created.json()["email"] == "grace@example.com"
    assert created.json()["password_set"] is True
    assert "another long password" not in created.text
    assert "argon2" not in created.text
    assert_problem(c.post("/v1/admin/accounts", json=body | {"id": "g2"}, headers=root), 409)
    short = c.post(
        "/v1/admin/accounts", json=body | {"id": "g3", "password": "short"}, headers=root
    )
    assert_problem(short, 422, "password")
    unknown = c.post(
        "/v1/admin/accounts",
        json=body | {"id": "g4", "email": "g4@example.com", "roles": {"nope": "viewer"}},
        headers=root,
    )
    assert_problem(unknown, 422, "roles")
    grace = as_person(base, sign_in(c, "grace@example.com", "another long password"))
    assert c.get("/v1/admin/projects/acme/keys", headers=grace).status_code == 200

    # A role taken away takes effect on the live session.
    demoted = c.patch("/v1/admin/accounts/grace", json={"roles": {"acme": "viewer"}}, headers=root)
    assert demoted.json()["roles"] == {"acme": "viewer"}
    assert_problem(c.get("/v1/admin/projects/acme/keys", headers=grace), 403)
    # A new password ends the sessions begun with the old one.
    reset = c.patch(
        "/v1/admin/accounts/grace", json={"password": "a new long password"}, headers=root
    )
    assert reset.status_code == 200
    assert_problem(c.get("/v1/metrics", headers=grace), 401)
    sign_in(c, "grace@example.com", "a new long password")
    assert_problem(c.patch("/v1/admin/accounts/root", json={"disabled": True}, headers=root), 409)
    assert_problem(c.patch("/v1/admin/accounts/grace", json={"email": None}, headers=root), 422)

    history = _audit(harness, target="account:*:grace")
    creation = next(e for e in history if e["action"] == "config.created")
    assert creation["actor"] == {"kind": "person", "id": "account:*:root", "name": "Root"}
    assert creation["source"] == "127.0.0.1"
    assert creation["after"]["roles"] == {"acme": "owner"}
    assert creation["after"]["password_set"] is True
    change = next(e for e in history if e["action"] == "config.changed")
    assert (change["before"]["roles"], change["after"]["roles"]) == (
        {"acme": "viewer"},
        {"acme": "viewer"},
    ) or change["after"]["session_generation"] == change["before"]["session_generation"] + 1
    assert all("argon2" not in str(e) and "password_hash" not in str(e) for e in history)
    listed = c.get("/v1/admin/accounts", headers=harness.admin).json()["items"]
    assert {"ada", "grace", "root"} <= {a["id"] for a in listed}
    assert "argon2" not in str(listed)


def test_a_hash_with_old_parameters_is_replaced_at_sign_in(harness: Harness) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    old = Account(id="legacy", email="legacy@example.com", password_hash=weak, roles={})
    harness.put_config(old)
    sign_in(harness.client, "legacy@example.com")
    stored = account_by_id(harness.app.state.gateway.state, "legacy")
    assert stored is not None
    assert stored.password_hash != weak
    assert stored.password_hash.startswith("$argon2id$v=19$m=65536,t=3")
    sign_in(harness.client, "legacy@example.com")


def test_a_person_changes_their_own_password_and_their_other_sessions_end(
    harness: Harness, replica: httpx.Client
) -> None:
    c, base = harness.client, harness.base_url
    harness.put_config(person("mia", {"acme": Role.VIEWER}))
    here, elsewhere = sign_in(c, "mia@example.com"), sign_in(replica, "mia@example.com")
    new = "a brand new passphrase"

    wrong = c.post(
        "/v1/auth/password",
        json={"current_password": "not it", "new_password": new},
        headers=as_person(base, here),
    )
    assert_problem(wrong, 401, "password")
    short = c.post(
        "/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=as_person(base, here),
    )
    assert_problem(short, 422, "new_password")
    foreign = c.post(
        "/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": new},
        headers=as_person(base, here, origin=False) | {"Origin": "https://evil.example"},
    )
    assert_problem(foreign, 403)

    changed = c.post(
        "/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": new},
        headers=as_person(base, here),
    )
    assert changed.status_code == 200, changed.text
    renewed = changed.cookies[SESSION_COOKIE]
    c.cookies.clear()
    # This browser stays signed in with its new session; the other device's session ends.
    assert c.get("/v1/auth/me", headers=as_person(base, renewed)).status_code == 200
    wait_for(
        lambda: replica.get("/v1/auth/me", headers=as_person(base, elsewhere)).status_code == 401,
        10,
        message="the other session ended on the replica",
    )
    assert_problem(c.get("/v1/auth/me", headers=as_person(base, here)), 401)
    old = c.post("/v1/auth/login", json={"email": "mia@example.com", "password": PASSWORD})
    assert_problem(old, 401)
    sign_in(c, "mia@example.com", new)
    entry = _audit(harness, action="password.changed", target="account:*:mia")[0]
    assert entry["actor"]["id"] == "account:*:mia"
    assert new not in str(entry)
    assert PASSWORD not in str(entry)

"""Roles, the audit log and key rotation, through a running gateway.

The authorisation matrix takes every operation from the OpenAPI document, so an endpoint
added later is judged too: what it needs is derived here from its path, independently of the
gateway's own dependencies, and an operation no rule classifies fails the test. Each role is
tried as a key and as a signed-in person with that role.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sextant.cli.main import app as cli
from sextant.schemas.config import ApiKey, KeyKind, Role, hash_key
from tests.infra import wait_for
from tests.integration.accounts_support import SECRET_KEY, as_person, person, sign_in
from tests.integration.test_gateway_admin import assert_problem
from tests.integration.test_gateway_harness import SECRETS, Harness, auth, make_harness

PUBLIC, VIEWER, EDITOR, OWNER, ORGANISATION = "public", "viewer", "editor", "owner", "org"
SESSION = "session"
"""Only a signed-in person (a key is answered 401: it is not a session)."""
RANK = {VIEWER: 1, EDITOR: 2, OWNER: 3}
ROLE_SECRETS = {
    ("acme", Role.OWNER): "sx_read_acme_owner_0000000000000",
    ("acme", Role.EDITOR): "sx_read_acme_editor_000000000000",
    ("globex", Role.OWNER): "sx_read_globex_owner_00000000000",
}


@pytest.fixture(scope="module")
def harness(kafka_bootstrap: str, warehouse_root: Path) -> Iterator[Harness]:
    with make_harness(
        kafka_bootstrap, warehouse_root, audit_failed_auth_threshold=3, secret_key=SECRET_KEY
    ) as running:
        running.put_config(
            *PEOPLE.values(),
            *(
                ApiKey(
                    id=f"{project}-{role.value}",
                    project_id=project,
                    key_kind=KeyKind.READ,
                    key_hash=hash_key(secret),
                    role=role,
                    name=f"{project} {role.value}",
                )
                for (project, role), secret in ROLE_SECRETS.items()
            ),
        )
        yield running


def needed(method: str, path: str) -> str:
    """What an operation needs, by the rules the README states."""
    if path in ("/healthz", "/readyz", "/metrics"):
        return PUBLIC
    if path == "/v1/auth/me":
        return SESSION
    if path.startswith("/v1/auth/"):
        return PUBLIC  # signing in and out, single sign-on
    if not path.startswith("/v1/admin/"):
        return VIEWER
    if not path.startswith("/v1/admin/projects/{project_id}"):
        return ORGANISATION
    if path == "/v1/admin/projects/{project_id}":
        return {"DELETE": ORGANISATION, "PUT": OWNER}.get(method, EDITOR)
    section = path.removeprefix("/v1/admin/projects/{project_id}/").split("/")[0]
    return OWNER if section in ("keys", "audit", "persons") else EDITOR


CALLERS: dict[str, tuple[str, str | None, str]] = {
    # name: (secret, role in acme or None, project the paths name)
    "admin": (SECRETS[("*", KeyKind.ADMIN)], None, "ghost"),
    "owner": (ROLE_SECRETS[("acme", Role.OWNER)], OWNER, "acme"),
    "editor": (ROLE_SECRETS[("acme", Role.EDITOR)], EDITOR, "acme"),
    "viewer": (SECRETS[("acme", KeyKind.READ)], VIEWER, "acme"),
    "foreign owner": (ROLE_SECRETS[("globex", Role.OWNER)], None, "acme"),
    "write": (SECRETS[("acme", KeyKind.WRITE)], None, "acme"),
}
PEOPLE = {
    # The person who stands for each key caller (an organisation admin for the admin key).
    "admin": person("org-admin", {}, org_admin=True),
    "owner": person("acme-owner", {"acme": Role.OWNER}),
    "editor": person("acme-editor", {"acme": Role.EDITOR}),
    "viewer": person("acme-viewer", {"acme": Role.VIEWER}),
    "foreign owner": person("globex-owner", {"globex": Role.OWNER}),
}


def callers(harness: Harness) -> dict[str, tuple[dict[str, str], str]]:
    """Every caller of the matrix: name → (request headers, the key caller it stands for).

    People send what the workspace sends: their cookie, its origin, and the project they
    look at (the person without a role in acme picks none: their one project is theirs)."""
    result = {name: (auth(secret), name) for name, (secret, _, _) in CALLERS.items()}
    for like, account in PEOPLE.items():
        session = sign_in(harness.client, account.email)
        project = "acme" if "acme" in account.roles else None
        headers = as_person(harness.base_url, session, project)
        result[f"person {like}"] = (headers, like)
    return result


def allowed(caller: str, need: str) -> bool:
    role = CALLERS[caller][1]
    if need == PUBLIC:
        return True
    if need == SESSION:
        return False
    if caller == "admin":
        return need != VIEWER  # the organisation's key reads no data
    if caller == "foreign owner":
        return need == VIEWER  # the read API answers for the key's own project
    if caller == "write" or need == ORGANISATION or role is None:
        return False
    return RANK[role] >= RANK[need]


def operations(harness: Harness) -> list[tuple[str, str]]:
    spec: dict[str, Any] = harness.client.get("/openapi.json").json()
    return [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops]


def test_every_operation_answers_each_role_as_the_matrix_says(harness: Harness) -> None:
    c = harness.client
    ops = operations(harness)
    assert len(ops) > 60, "the OpenAPI document lists the operations"
    denied_before = len(_audit(harness, action="access.denied"))
    refusals = 0
    wrong: list[str] = []
    everyone = callers(harness)
    for method, path in ops:
        need = needed(method, path)
        for caller, (headers, like) in everyone.items():
            project = CALLERS[like][2]
            url = re.sub(r"\{[a-z_]+\}", "nope", path.replace("{project_id}", project))
            body = {} if method in ("POST", "PUT", "PATCH") else None
            answer = c.request(method, url, json=body, headers=headers)
            is_person = caller.startswith("person ")
            if need == SESSION and not is_person:
                if answer.status_code != 401:
                    wrong.append(f"{caller} {method} {path}: {answer.status_code}, not 401")
            elif need == SESSION or allowed(like, need):
                if answer.status_code in (401, 403):
                    wrong.append(f"{caller} {method} {path}: {answer.status_code} {answer.text}")
            elif answer.status_code != 403:
                wrong.append(f"{caller} {method} {path}: {answer.status_code}, not 403")
            else:
                assert_problem(answer, 403)
                refusals += 1
        if need != PUBLIC:
            assert c.request(method, path.replace("{", "").replace("}", "")).status_code == 401
    assert not wrong, "\n".join(wrong)
    denied = _audit(harness, action="access.denied")
    assert len(denied) - denied_before == refusals
    assert any(
        e["actor"]["id"] == "api_key:acme:acme-editor" and "keys" in e["target"] for e in denied
    )
    assert any(
        e["actor"]["id"] == "account:*:acme-editor" and "keys" in e["target"] for e in denied
    )


def test_whoami_names_the_keys_role(harness: Harness) -> None:
    """The workspace offers a document's history (the audit log) by the role it names."""
    secrets = {
        VIEWER: SECRETS[("acme", KeyKind.READ)],
        EDITOR: ROLE_SECRETS[("acme", Role.EDITOR)],
        OWNER: ROLE_SECRETS[("acme", Role.OWNER)],
    }
    for role, secret in secrets.items():
        me = harness.client.get("/v1/whoami", headers=auth(secret))
        assert me.status_code == 200, f"{role}: {me.text}"
        assert (me.json()["project_id"], me.json()["role"]) == ("acme", role)


def _audit(harness: Harness, **filters: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = filters | ({"cursor": cursor} if cursor else {}) | {"limit": "1000"}
        page = harness.client.get("/v1/admin/audit", params=params, headers=harness.admin)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items


def test_config_changes_are_audited_with_author_before_and_after(harness: Harness) -> None:
    c, editor = harness.client, auth(ROLE_SECRETS[("acme", Role.EDITOR)])
    base = "/v1/admin/projects/acme/metrics"
    body = {"id": "audited", "metric_kind": "count", "event": "Paid"}
    assert c.post(base, json=body, headers=editor).status_code == 201
    assert c.put(f"{base}/audited", json=body | {"name": "Paid"}, headers=editor).status_code == 200
    assert c.delete(f"{base}/audited", headers=harness.admin).status_code == 204

    page = c.get(
        "/v1/admin/projects/acme/audit",
        params={"target": "metric:acme:audited", "limit": "2"},
        headers=auth(ROLE_SECRETS[("acme", Role.OWNER)]),
    ).json()
    deleted, changed = page["items"]
    assert deleted["action"] == "config.deleted"
    assert deleted["actor"] == {"kind": "key", "id": "api_key:*:ops-admin", "name": ""}
    assert deleted["before"]["name"] == "Paid"
    assert deleted["after"] is None
    assert changed["action"] == "config.changed"
    assert changed["actor"]["name"] == "acme editor"
    assert changed["before"]["name"] == ""
    assert changed["after"]["name"] == "Paid"
    assert changed["source"] == "127.0.0.1"
    rest = c.get(
        "/v1/admin/projects/acme/audit",
        params={"target": "metric:acme:audited", "cursor": page["next_cursor"]},
        headers=harness.admin,
    ).json()
    assert [e["action"] for e in rest["items"]] == ["config.created"]
    assert rest["next_cursor"] is None
    # A project's log shows that project only, to its owner only.
    assert all(e["project_id"] == "acme" for e in page["items"])
    assert_problem(c.get("/v1/admin/projects/acme/audit", headers=editor), 403)
    assert_problem(
        c.get("/v1/admin/audit", params={"action": "nonsense"}, headers=harness.admin), 422
    )


def test_key_events_rotation_and_failed_attempts(harness: Harness) -> None:
    c, owner = harness.client, auth(ROLE_SECRETS[("acme", Role.OWNER)])
    created = c.post(
        "/v1/admin/projects/acme/keys",
        json={"kind": "read", "id": "rotating", "role": "editor"},
        headers=owner,
    )
    assert created.status_code == 201, created.text
    assert created.json()["key"]["role"] == "editor"
    old = auth(created.json()["secret"])
    assert c.get("/v1/metrics", headers=old).status_code == 200
    view = c.get("/v1/admin/projects/acme/keys/rotating", headers=owner).json()
    assert view["last_used_at"] is not None

    rotated = c.post(
        "/v1/admin/projects/acme/keys/rotating/rotate",
        json={"overlap_seconds": 3600},
        headers=owner,
    )
    assert rotated.status_code == 201, rotated.text
    new = auth(rotated.json()["secret"])
    assert rotated.json()["key"]["role"] == "editor"
    # Both work during the overlap; without one, the old key stops at once.
    assert c.get("/v1/metrics", headers=old).status_code == 200
    assert c.get("/v1/metrics", headers=new).status_code == 200
    again = c.post(
        f"/v1/admin/projects/acme/keys/{rotated.json()['key']['id']}/rotate",
        json={"overlap_seconds": 0},
        headers=owner,
    )
    assert again.status_code == 201
    assert_problem(c.get("/v1/metrics", headers=new), 401)
    assert c.get("/v1/metrics", headers=auth(again.json()["secret"])).status_code == 200

    revoked = c.delete("/v1/admin/projects/acme/keys/rotating", headers=owner)
    assert revoked.status_code == 200
    actions = [e["action"] for e in _audit(harness, target="api_key:acme:rotating")]
    assert actions[0] == "key.revoked"  # newest first
    assert {"key.created", "key.first_used", "config.changed"} <= set(actions)

    for _ in range(3):
        assert_problem(c.get("/v1/metrics", headers=auth("sx_read_guessed")), 401)
    failures = _audit(harness, action="auth.failures")
    assert failures
    assert "3 failed attempts" in failures[0]["detail"]


def test_writes_straight_to_the_config_topic_are_audited_too(
    harness: Harness, tmp_path: Path
) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_text("projects:\n  - id: by-cli\n    name: Written by the CLI\n")
    env = {
        "SEXTANT_KAFKA_BOOTSTRAP": harness.settings.kafka_bootstrap,
        "SEXTANT_TOPIC_PREFIX": harness.settings.topic_prefix,
        "SEXTANT_CONFIG_WAIT_SECONDS": "20",
    }
    done = CliRunner().invoke(cli, ["config", "apply", str(config_file)], env=env)
    assert done.exit_code == 0, done.output

    def entry() -> list[dict[str, Any]]:
        return _audit(harness, target="project:by-cli:by-cli")

    wait_for(entry, 20, message="the CLI's write in the audit log")
    [created] = entry()
    assert created["action"] == "config.created"
    assert created["actor"]["id"] == "sextant config apply"
    assert created["after"]["name"] == "Written by the CLI"

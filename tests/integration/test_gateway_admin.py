"""The admin API writes the config topic and reads back its own writes; keys work at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sextant.core.kafka import read_all
from sextant.schemas.config import hash_key
from sextant.schemas.topics import Topic, topic_name
from tests.infra import wait_for
from tests.integration.test_gateway_harness import Harness, auth, make_harness


@pytest.fixture(scope="module")
def harness(kafka_bootstrap: str, warehouse_root: Path) -> Iterator[Harness]:
    with make_harness(kafka_bootstrap, warehouse_root) as running:
        yield running


def assert_problem(
    response: object, status: int, parameter: str | None = None
) -> dict[str, object]:
    assert response.status_code == status, response.text
    headers = response.headers
    assert headers["content-type"].startswith("application/problem+json")
    body: dict[str, object] = response.json()
    assert set(body) == {"type", "title", "status", "detail", "parameter"}
    assert body["status"] == status
    if parameter is not None:
        assert body["parameter"] == parameter
    return body


def test_a_new_project_and_read_key_answer_queries_at_once(harness: Harness) -> None:
    c = harness.client
    created = c.post(
        "/v1/admin/projects", json={"id": "shop", "name": "Shop"}, headers=harness.admin
    )
    assert created.status_code == 201, created.text
    assert created.json()["id"] == "shop"

    key = c.post(
        "/v1/admin/projects/shop/keys",
        json={"kind": "read", "name": "board"},
        headers=harness.admin,
    )
    assert key.status_code == 201, key.text
    secret = key.json()["secret"]
    assert "key_hash" not in key.json()["key"]

    metrics = c.get("/v1/metrics", headers=auth(secret))
    assert metrics.status_code == 200, metrics.text
    assert metrics.json() == {"items": [], "next_cursor": None}

    listed = c.get("/v1/admin/projects/shop/keys", headers=harness.admin).json()["items"]
    assert [k["id"] for k in listed] == [key.json()["key"]["id"]]
    assert all("secret" not in k and "key_hash" not in k for k in listed)

    revoked = c.delete(
        f"/v1/admin/projects/shop/keys/{key.json()['key']['id']}", headers=harness.admin
    )
    assert revoked.status_code == 200
    assert revoked.json()["revoked"] is True
    assert_problem(c.get("/v1/metrics", headers=auth(secret)), 401)


def test_keys_are_stored_hashed_on_the_config_topic(harness: Harness) -> None:
    key = harness.client.post(
        "/v1/admin/projects/acme/keys",
        json={"kind": "write", "id": "ingest"},
        headers=harness.admin,
    ).json()
    records = [
        r
        for r in read_all(harness.settings, topic_name(Topic.CONFIG, harness.settings.topic_prefix))
        if r.key == b"api_key:acme:ingest"
    ]
    assert records, "the key was not written to the config topic"
    stored = records[-1].value or b""
    assert key["secret"].encode() not in stored
    assert hash_key(key["secret"]).encode() in stored


@pytest.mark.parametrize(
    ("path", "body", "change"),
    [
        (
            "metrics",
            {"id": "orders", "metric_kind": "count", "event": "Order Completed"},
            {"name": "Orders"},
        ),
        (
            "experiments",
            {"id": "exp1", "variants": [{"id": "a", "weight": 0.5}, {"id": "b", "weight": 0.5}]},
            {"coverage": 0.5},
        ),
        (
            "alert-rules",
            {"id": "r1", "rule_kind": "threshold", "metric": "orders", "threshold": 5},
            {"threshold": 7.0},
        ),
        ("tracking-plans", {"id": "plan", "mode": "flag"}, {"mode": "enforce"}),
    ],
)
def test_documents_create_read_replace_delete(
    harness: Harness, path: str, body: dict[str, object], change: dict[str, object]
) -> None:
    c, base = harness.client, f"/v1/admin/projects/acme/{path}"
    created = c.post(base, json=body, headers=harness.admin)
    assert created.status_code == 201, created.text
    assert created.json()["project_id"] == "acme"
    assert_problem(c.post(base, json=body, headers=harness.admin), 409, "id")

    doc_id = body["id"]
    assert c.get(f"{base}/{doc_id}", headers=harness.admin).json() == created.json()
    assert doc_id in [d["id"] for d in c.get(base, headers=harness.admin).json()["items"]]

    replaced = c.put(f"{base}/{doc_id}", json={**body, **change}, headers=harness.admin)
    assert replaced.status_code == 200, replaced.text
    fetched = c.get(f"{base}/{doc_id}", headers=harness.admin).json()
    assert all(fetched[k] == v for k, v in change.items())

    assert c.delete(f"{base}/{doc_id}", headers=harness.admin).status_code == 204
    assert_problem(c.get(f"{base}/{doc_id}", headers=harness.admin), 404)
    assert_problem(c.delete(f"{base}/{doc_id}", headers=harness.admin), 404)


def test_invalid_documents_name_the_field(harness: Harness) -> None:
    c = harness.client
    missing = c.post(
        "/v1/admin/projects/acme/metrics",
        json={"id": "m", "metric_kind": "sum", "event": "Paid"},
        headers=harness.admin,
    )
    assert "property" in str(assert_problem(missing, 422)["detail"])
    bad_kind = c.post(
        "/v1/admin/projects/acme/metrics",
        json={"id": "m", "metric_kind": "median", "event": "Paid"},
        headers=harness.admin,
    )
    assert_problem(bad_kind, 422, "metric_kind")
    bad_id = c.post(
        "/v1/admin/projects/acme/metrics",
        json={"id": "no spaces", "metric_kind": "count", "event": "Paid"},
        headers=harness.admin,
    )
    assert_problem(bad_id, 422, "id")
    mismatch = c.put(
        "/v1/admin/projects/acme/metrics/a",
        json={"id": "b", "metric_kind": "count", "event": "x"},
        headers=harness.admin,
    )
    assert_problem(mismatch, 422, "id")
    assert_problem(
        c.post(
            "/v1/admin/projects/nope/metrics",
            json={"id": "m", "metric_kind": "count", "event": "x"},
            headers=harness.admin,
        ),
        404,
        "project_id",
    )


def test_apply_takes_the_config_file_format(harness: Harness) -> None:
    c = harness.client
    yaml_text = """
projects:
  - id: applied
    name: Applied project
    keys: [{id: r, kind: read, secret: "sx_read_applied_000000000000"}]
    metrics: [{id: signups, metric_kind: count, event: Signed Up}]
"""
    response = c.post(
        "/v1/admin/apply",
        content=yaml_text,
        headers=harness.admin | {"Content-Type": "application/yaml"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["applied"] == 3
    metrics = c.get("/v1/metrics", headers=auth("sx_read_applied_000000000000"))
    assert [m["id"] for m in metrics.json()["items"]] == ["signups"]

    yaml_headers = harness.admin | {"Content-Type": "application/yaml"}
    assert_problem(
        c.post("/v1/admin/apply", content="projects: [", headers=yaml_headers), 400, "body"
    )
    wrong = c.post(
        "/v1/admin/apply",
        content="projects: [{id: x, name: X, metrics: [{id: m, metric_kind: nope, event: e}]}]",
        headers=yaml_headers,
    )
    assert_problem(wrong, 422)
    assert_problem(
        c.post(
            "/v1/admin/apply",
            content="projects: []",
            headers=harness.admin | {"Content-Type": "text/plain"},
        ),
        415,
    )


def test_deleting_a_project_removes_its_keys(harness: Harness) -> None:
    c = harness.client
    c.post("/v1/admin/projects", json={"id": "doomed", "name": "Doomed"}, headers=harness.admin)
    secret = c.post(
        "/v1/admin/projects/doomed/keys", json={"kind": "read"}, headers=harness.admin
    ).json()["secret"]
    assert c.get("/v1/metrics", headers=auth(secret)).status_code == 200
    assert c.delete("/v1/admin/projects/doomed", headers=harness.admin).status_code == 204
    assert_problem(c.get("/v1/admin/projects/doomed", headers=harness.admin), 404)
    assert_problem(c.get("/v1/metrics", headers=auth(secret)), 401)


def test_admin_keys_can_be_created_and_revoked_but_not_by_themselves(harness: Harness) -> None:
    c = harness.client
    created = c.post("/v1/admin/admin-keys", json={"id": "second"}, headers=harness.admin)
    assert created.status_code == 201, created.text
    second = auth(created.json()["secret"])
    assert c.get("/v1/admin/projects", headers=second).status_code == 200
    assert_problem(c.delete("/v1/admin/admin-keys/second", headers=second), 409, "key_id")
    assert c.delete("/v1/admin/admin-keys/second", headers=harness.admin).status_code == 200
    assert_problem(c.get("/v1/admin/projects", headers=second), 401)


def test_keys_open_only_their_own_door(harness: Harness) -> None:
    c = harness.client
    assert_problem(c.get("/v1/admin/projects", headers=harness.read), 403)
    assert_problem(c.get("/v1/admin/projects"), 401)
    assert_problem(c.get("/v1/admin/projects", headers=auth("not-a-key")), 401)
    assert_problem(c.get("/v1/metrics", headers=harness.write), 403)
    assert_problem(c.get("/v1/metrics", headers=harness.admin), 403)
    assert c.get("/v1/metrics").headers["www-authenticate"] == "Bearer"


def test_every_failure_has_the_problem_shape(harness: Harness) -> None:
    c = harness.client
    assert_problem(c.get("/v1/nowhere", headers=harness.read), 404)
    assert_problem(c.put("/v1/metrics", headers=harness.read), 405)
    assert_problem(c.get("/v1/metrics?limit=0", headers=harness.read), 422, "limit")
    assert_problem(c.get("/v1/metrics?cursor=%27%3B", headers=harness.read), 422, "cursor")
    huge = "x" * (harness.settings.max_body_bytes + 1)
    assert_problem(
        c.post(
            "/v1/admin/apply",
            content=huge,
            headers=harness.admin | {"Content-Type": "application/yaml"},
        ),
        413,
        "body",
    )
    assert_problem(
        c.post(
            "/v1/insights/trends",
            content=b"{not json",
            headers=harness.read | {"Content-Type": "application/json"},
        ),
        422,
    )


def test_lists_are_paged(harness: Harness) -> None:
    c = harness.client
    for i in range(5):
        c.post(
            "/v1/admin/projects/globex/metrics",
            json={"id": f"m{i}", "metric_kind": "count", "event": "e"},
            headers=harness.admin,
        )
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = c.get("/v1/metrics", params=params, headers=harness.foreign).json()
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"m{i}" for i in range(5)]


def test_readiness_reports_every_dependency(harness: Harness) -> None:
    body = wait_for(
        lambda: (r := harness.client.get("/readyz")).status_code == 200 and r.json(), 20
    )
    assert set(body["checks"]) == {"config", "warehouse", "live_feed", "experiment-alerts", "ramps"}


def test_config_apply_goes_through_the_gateway(harness: Harness, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sextant.cli.main import app

    config = tmp_path / "config.yaml"
    config.write_text(
        "projects:\n"
        "  - id: via-cli\n"
        "    name: Through the gateway\n"
        "    metrics: [{id: views, metric_kind: count, event: $page}]\n"
    )
    admin_key = harness.admin["Authorization"].removeprefix("Bearer ")
    runner = CliRunner()
    done = runner.invoke(
        app,
        ["config", "apply", str(config), "--gateway", harness.base_url, "--admin-key", admin_key],
    )
    assert done.exit_code == 0, done.output
    listed = harness.client.get("/v1/admin/projects/via-cli/metrics", headers=harness.admin).json()
    assert [m["id"] for m in listed["items"]] == ["views"]

    refused = runner.invoke(
        app, ["config", "apply", str(config), "--gateway", harness.base_url, "--admin-key", "wrong"]
    )
    assert refused.exit_code == 1
    assert "401" in refused.output

"""Secrets at rest: webhook signing secrets written through the admin API, its apply endpoint
and ``sextant config apply`` reach the config topic sealed, never in clear, and the notifier
still signs with them; nothing prints them. ``sextant bootstrap`` makes one admin key, and
``sextant secrets rotate`` moves every secret to a new master key."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sextant.cli.main import app as cli
from sextant.core.alert_log import AlertPublisher
from sextant.core.config_plane import ConfigFollower, ConfigPublisher, ConfigState
from sextant.core.demo import DEMO_KEY_HASHES
from sextant.core.kafka import read_all
from sextant.core.secrets import SEALED_PREFIX, SecretBox, generate_secret_key, is_sealed
from sextant.core.settings import KafkaSection
from sextant.notifier.signing import verify
from sextant.schemas.config import ALL_PROJECTS, AlertRule, ApiKey, KeyKind, Project, hash_key
from sextant.schemas.records import AlertState, AlertTransition
from sextant.schemas.topics import Topic, topic_name
from tests.infra import wait_for
from tests.integration.alerting_support import BOX, MASTER_KEY, notifier, receiver
from tests.integration.test_gateway_admin import assert_problem
from tests.integration.test_gateway_harness import Harness, make_harness

API_SECRET = "whsec_through_the_admin_api_4711"
APPLY_SECRET = "whsec_through_admin_apply_0815"
CLI_SECRET = "whsec_through_config_apply_1234"


@pytest.fixture(scope="module")
def harness(kafka_bootstrap: str, warehouse_root: Path) -> Iterator[Harness]:
    with make_harness(kafka_bootstrap, warehouse_root, secret_key=MASTER_KEY) as running:
        yield running


def rule_body(rule_id: str, url: str, secret: str) -> dict[str, Any]:
    return {
        "id": rule_id,
        "rule_kind": "threshold",
        "metric": "checkout",
        "direction": "below",
        "threshold": 0.05,
        "targets": [{"url": url, "secret": secret}],
    }


def env_of(kafka: KafkaSection, **more: str) -> dict[str, str]:
    return {
        "SEXTANT_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap,
        "SEXTANT_TOPIC_PREFIX": kafka.topic_prefix,
        "SEXTANT_CONFIG_WAIT_SECONDS": "20",
    } | more


def config_records(kafka: KafkaSection) -> list[bytes]:
    topic = topic_name(Topic.CONFIG, kafka.topic_prefix)
    return [r.value for r in read_all(kafka, topic) if r.value is not None]


def current_config(kafka: KafkaSection) -> ConfigState:
    follower = ConfigFollower(kafka).start()
    try:
        assert follower.wait_caught_up(20)
        return follower.state
    finally:
        follower.stop()


def transition(rule_id: str, project_id: str) -> AlertTransition:
    return AlertTransition(
        transition_id=f"t-{rule_id}",
        project_id=project_id,
        rule_id=rule_id,
        episode_id="e-1",
        from_state=AlertState.PENDING,
        to_state=AlertState.FIRING,
        at=datetime.now(UTC),
        value=0.01,
        threshold=0.05,
        severity="warning",
        message="checkout dropped",
    )


def test_webhook_secrets_are_stored_sealed_and_the_notifier_signs_with_them(
    harness: Harness, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    c, admin = harness.client, harness.admin
    kafka = KafkaSection(
        kafka_bootstrap=harness.settings.kafka_bootstrap,
        topic_prefix=harness.settings.topic_prefix,
    )
    with receiver() as hook:
        # 1. The admin API: the answer, and every read after it, shows the secret sealed.
        created = c.post(
            "/v1/admin/projects/acme/alert-rules",
            json=rule_body("by-api", hook.url, API_SECRET),
            headers=admin,
        )
        assert created.status_code == 201, created.text
        shown = c.get("/v1/admin/projects/acme/alert-rules/by-api", headers=admin)
        stored_secret = shown.json()["targets"][0]["secret"]
        assert stored_secret.startswith(SEALED_PREFIX)
        assert BOX.open(stored_secret) == API_SECRET
        # A rule read, edited and written back keeps its sealed secret as it is.
        edited = {k: v for k, v in shown.json().items() if k not in ("kind", "project_id")}
        edited["name"] = "renamed"
        replaced = c.put("/v1/admin/projects/acme/alert-rules/by-api", json=edited, headers=admin)
        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["targets"][0]["secret"] == stored_secret
        # A sealed value this deployment's key does not open is refused, naming the field.
        foreign = rule_body("foreign", hook.url, SecretBox([generate_secret_key()]).seal("x"))
        refused = c.post("/v1/admin/projects/acme/alert-rules", json=foreign, headers=admin)
        assert_problem(refused, 422, "targets.0.secret")
        too_long = c.post(
            "/v1/admin/projects/acme/alert-rules",
            json=rule_body("long", hook.url, "whsec_" + "z" * 300),
            headers=admin,
        )
        assert_problem(too_long, 422)
        assert "z" * 50 not in too_long.text

        # 2. The admin API's apply endpoint (the config file format).
        applied = c.post(
            "/v1/admin/apply",
            content=f"""
projects:
  - id: hooks
    name: Hooks
    alert_rules:
      - {{id: by-apply, rule_kind: threshold, metric: checkout, direction: below,
          threshold: 0.05, targets: [{{url: "{hook.url}", secret: {APPLY_SECRET}}}]}}
""",
            headers=admin | {"Content-Type": "application/yaml"},
        )
        assert applied.status_code == 200, applied.text

        # 3. `sextant config apply` straight to the topic.
        config_file = tmp_path / "hooks.yaml"
        config_file.write_text(
            f"""
projects:
  - id: cli-hooks
    name: CLI hooks
    alert_rules:
      - {{id: by-cli, rule_kind: threshold, metric: checkout, direction: below,
          threshold: 0.05, targets: [{{url: "{hook.url}", secret: {CLI_SECRET}}}]}}
"""
        )
        done = CliRunner().invoke(
            cli,
            ["config", "apply", str(config_file)],
            env=env_of(kafka, SEXTANT_SECRET_KEY=MASTER_KEY),
        )
        assert done.exit_code == 0, done.output
        keyless = CliRunner().invoke(
            cli, ["config", "apply", str(config_file)], env=env_of(kafka, SEXTANT_SECRET_KEY="")
        )
        assert keyless.exit_code == 2
        # The console wraps at its width, wherever the file's path ends: compare words.
        assert "SEXTANT_SECRET_KEY is not set" in " ".join(keyless.output.split())

        # The topic holds each secret sealed, never in clear.
        records = b"\n".join(config_records(kafka))
        for secret in (API_SECRET, APPLY_SECRET, CLI_SECRET):
            assert secret.encode() not in records
        assert records.count(SEALED_PREFIX.encode()) >= 4  # created, replaced, apply, cli
        assert MASTER_KEY.encode() not in records

        # The notifier opens them and signs each delivery with the right one.
        rules = {"by-api": ("acme", API_SECRET), "by-apply": ("hooks", APPLY_SECRET)}
        rules["by-cli"] = ("cli-hooks", CLI_SECRET)
        with notifier(kafka) as notifier_client:
            wait_for(lambda: notifier_client.get("/readyz").status_code == 200, 60)
            publisher = AlertPublisher(kafka)
            try:
                publisher.publish([transition(r, p) for r, (p, _) in rules.items()])
            finally:
                publisher.close()
            wait_for(lambda: len(hook.processed) == 3, 60, message="three deliveries")
            notifier_pages = notifier_client.get("/deliveries").text
            notifier_pages += notifier_client.get("/metrics").text
        for request in hook.requests:
            rule_id = request.json()["rule"]["id"]
            header = request.headers["x-sextant-signature"]
            assert verify(rules[rule_id][1], header, request.body, now=time.time()), rule_id
            others = [s for r, (_, s) in rules.items() if r != rule_id]
            assert not any(verify(s, header, request.body, now=time.time()) for s in others)

    # Nothing printed or served shows a secret or the master key.
    served = notifier_pages + c.get("/metrics").text
    served += c.get("/v1/admin/projects/acme/alert-rules", headers=admin).text
    captured = capfd.readouterr()
    seen = captured.out + captured.err + served + done.output
    assert "webhook delivery" in seen  # the logs were captured: the search below means something
    for secret in (API_SECRET, APPLY_SECRET, CLI_SECRET, MASTER_KEY):
        assert secret not in seen


def test_a_gateway_without_the_master_key_stores_no_secret_and_says_why(
    kafka_bootstrap: str, warehouse_root: Path
) -> None:
    with make_harness(kafka_bootstrap, warehouse_root) as keyless:
        body = rule_body("signed", "https://hooks.example.com/x", API_SECRET)
        refused = keyless.client.post(
            "/v1/admin/projects/acme/alert-rules", json=body, headers=keyless.admin
        )
        problem = assert_problem(refused, 503)
        assert problem["type"].endswith("secret-key-missing")  # type: ignore[union-attr]
        assert "SEXTANT_SECRET_KEY" in str(problem["detail"])
        assert API_SECRET not in refused.text
        body["targets"][0]["secret"] = ""
        unsigned = keyless.client.post(
            "/v1/admin/projects/acme/alert-rules", json=body, headers=keyless.admin
        )
        assert unsigned.status_code == 201, unsigned.text


def test_rotation_reseals_every_secret_under_the_new_key(kafka_settings: KafkaSection) -> None:
    old, new = generate_secret_key(), generate_secret_key()
    sealed = AlertRule.model_validate(
        {"project_id": "shop", **rule_body("sealed", "https://a.example/", "")}
        | {"targets": [{"url": "https://a.example/", "secret": SecretBox([old]).seal("one")}]}
    )
    legacy = AlertRule.model_validate(
        {"project_id": "shop", **rule_body("legacy", "https://b.example/", "two")}
    )
    publisher = ConfigPublisher(kafka_settings)
    try:
        publisher.put([Project(id="shop", project_id="shop", name="Shop"), sealed, legacy])
    finally:
        publisher.close()

    runner = CliRunner()
    rotated = runner.invoke(
        cli, ["secrets", "rotate"], env=env_of(kafka_settings, SEXTANT_SECRET_KEY=f"{new},{old}")
    )
    assert rotated.exit_code == 0, rotated.output
    assert "2 documents" in rotated.output
    state = current_config(kafka_settings)
    only_new = SecretBox([new])
    opened = {rule.id: only_new.open(rule.targets[0].secret) for rule in state.of_kind(AlertRule)}
    assert opened == {"sealed": "one", "legacy": "two"}
    assert all(is_sealed(r.targets[0].secret) for r in state.of_kind(AlertRule))

    lost = runner.invoke(
        cli, ["secrets", "rotate"], env=env_of(kafka_settings, SEXTANT_SECRET_KEY=old)
    )
    assert lost.exit_code == 1
    assert "no key opens" in lost.output
    keyless = runner.invoke(
        cli, ["secrets", "rotate"], env=env_of(kafka_settings, SEXTANT_SECRET_KEY="")
    )
    assert keyless.exit_code == 2


def admin_keys(kafka: KafkaSection) -> list[ApiKey]:
    keys = current_config(kafka).of_kind(ApiKey, ALL_PROJECTS)
    return [k for k in keys if k.key_kind is KeyKind.ADMIN and not k.revoked]


def test_bootstrap_twice_makes_one_admin_key_and_says_so_the_second_time(
    kafka_settings: KafkaSection,
) -> None:
    # The public demo admin key does not count as the deployment's own.
    demo = ApiKey(
        id="demo-admin",
        project_id=ALL_PROJECTS,
        key_kind=KeyKind.ADMIN,
        key_hash=hash_key("sx_admin_demo_0000000000000000"),
    )
    publisher = ConfigPublisher(kafka_settings)
    try:
        publisher.put([demo])
    finally:
        publisher.close()
    runner = CliRunner()
    env = env_of(kafka_settings, SEXTANT_SECRET_KEY=MASTER_KEY)

    first = runner.invoke(cli, ["bootstrap"], env=env)
    assert first.exit_code == 0, first.output
    secret = next(
        line.split(": ", 1)[1] for line in first.output.splitlines() if "admin key: " in line
    )
    own = [k for k in admin_keys(kafka_settings) if k.key_hash not in DEMO_KEY_HASHES]
    assert [k.key_hash for k in own] == [hash_key(secret)]
    assert "SEXTANT_SECRET_KEY=" not in first.output  # the key was set: none is made

    second = runner.invoke(cli, ["bootstrap"], env=env)
    assert second.exit_code == 0, second.output
    assert f"an admin key exists ({own[0].id}); none created" in second.output
    assert "sx_admin_" not in second.output
    assert len([k for k in admin_keys(kafka_settings) if k.id != "demo-admin"]) == 1

    revoked = runner.invoke(cli, ["config", "revoke-demo"], env=env)
    assert revoked.exit_code == 0, revoked.output
    assert [k.id for k in admin_keys(kafka_settings)] == [own[0].id]

    keyless = runner.invoke(cli, ["bootstrap"], env=env | {"SEXTANT_SECRET_KEY": ""})
    assert "an admin key exists" in keyless.output
    made = next(
        line.split("=", 1)[1]
        for line in keyless.output.splitlines()
        if line.startswith("SEXTANT_SECRET_KEY=")
    )
    assert SecretBox([made]).open(SecretBox([made]).seal("x")) == "x"

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from sextant.core.config_file import documents_from_file, load_config_file
from sextant.core.config_plane import decode_record, encode_document
from sextant.schemas.config import (
    CONFIG_DOCUMENT,
    ApiKey,
    Feature,
    KeyKind,
    MetricDefinition,
    hash_key,
    parse_config_key,
)

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "config" / "demo.yaml"


def test_demo_config_describes_a_project_with_keys_and_metrics() -> None:
    documents = documents_from_file(load_config_file(DEMO))
    keys = [d for d in documents if isinstance(d, ApiKey)]
    assert {k.key_kind for k in keys} == {KeyKind.WRITE, KeyKind.READ, KeyKind.ADMIN}
    assert all(len(k.key_hash) == 64 for k in keys)
    assert any(isinstance(d, MetricDefinition) for d in documents)
    assert len({d.config_key() for d in documents}) == len(documents)


def test_secrets_are_never_stored() -> None:
    text = DEMO.read_text()
    documents = documents_from_file(load_config_file(DEMO))
    dumped = "".join(d.model_dump_json() for d in documents)
    write_secret = "sx_write_demo_0000000000000000"
    assert write_secret in text
    assert write_secret not in dumped
    assert hash_key(write_secret) in dumped


def test_config_keys_round_trip() -> None:
    document = CONFIG_DOCUMENT.validate_python(
        {"kind": "metric", "id": "m", "project_id": "p", "metric_kind": "count", "event": "E"}
    )
    kind, project, doc_id = parse_config_key(document.config_key())
    assert (kind.value, project, doc_id) == ("metric", "p", "m")


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "metric", "id": "m", "project_id": "p", "metric_kind": "sum", "event": "E"},
        {"kind": "metric", "id": "m", "project_id": "p", "metric_kind": "conversion", "event": "E"},
        {
            "kind": "metric",
            "id": "bad id!",
            "project_id": "p",
            "metric_kind": "count",
            "event": "E",
        },
        {
            "kind": "metric",
            "id": "m",
            "project_id": "p",
            "metric_kind": "count",
            "event": "E",
            "breakdown": "x'; DROP TABLE events --",
        },
        {"kind": "api_key", "id": "k", "project_id": "*", "key_kind": "read", "key_hash": "0" * 64},
        {
            "kind": "api_key",
            "id": "k",
            "project_id": "p",
            "key_kind": "admin",
            "key_hash": "0" * 64,
        },
    ],
)
def test_invalid_documents_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CONFIG_DOCUMENT.validate_python(body)


def _feature_with_every_rule() -> Feature:
    return Feature.model_validate(
        {
            "id": "banner",
            "project_id": "shop",
            "value_type": "string",
            "default_value": "Hello",
            "environments": {
                "production": {
                    "rules": [
                        {"type": "force", "id": "fr", "condition": {"lang": "fr"}, "value": "Hi"},
                        {"type": "rollout", "id": "half", "coverage": 0.5, "value": "Bonjour"},
                        {"type": "experiment", "id": "test", "experiment": "copy-test"},
                    ]
                }
            },
        }
    )


def test_documents_read_back_as_the_config_topic_writes_them() -> None:
    documents = [*documents_from_file(load_config_file(DEMO)), _feature_with_every_rule()]
    for document in documents:
        key, read = decode_record(document.config_key().encode(), encode_document(document))
        assert key == document.config_key()
        assert read == document, key


def test_a_rule_keeps_its_kind_when_defaults_are_left_out() -> None:
    written = orjson.loads(encode_document(_feature_with_every_rule()))
    rules = written["environments"]["production"]["rules"]
    assert [r["type"] for r in rules] == ["force", "rollout", "experiment"]

"""Docker compose's `cluster` profile (not run here: no Docker engine): two shards of two
replicas and Keeper, every node told its shard and replica, the parts in cluster mode on it,
and the server settings the parts' SQL relies on."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "deploy" / "clickhouse" / "cluster"


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())[
        "services"
    ]
    return {name: s for name, s in found.items() if "cluster" in (s.get("profiles") or [])}


def test_two_shards_of_two_replicas_with_keeper() -> None:
    config = ET.parse(CLUSTER / "cluster.xml").getroot()
    shards = config.findall("./remote_servers/sextant/shard")
    hosts = [[r.findtext("host", "") for r in shard.findall("replica")] for shard in shards]
    assert hosts == [["ch-s1r1", "ch-s1r2"], ["ch-s2r1", "ch-s2r2"]]
    assert all(shard.findtext("internal_replication") == "true" for shard in shards)
    assert config.find("./macros/shard").get("from_env") == "CLICKHOUSE_SHARD"  # type: ignore[union-attr]
    assert config.findtext("./zookeeper/node/host") == "ch-keeper"
    nodes = services()
    for shard, replicas in enumerate(hosts, start=1):
        for replica in replicas:
            environment = nodes[replica]["environment"]
            assert environment["CLICKHOUSE_SHARD"] == str(shard)
            assert environment["CLICKHOUSE_REPLICA"] == replica
            mounts = " ".join(nodes[replica]["volumes"])
            assert "cluster.xml" in mounts
            assert "profile.xml" in mounts
    assert "ch-keeper" in nodes


def test_the_parts_run_in_cluster_mode() -> None:
    nodes = services()
    parts = {name: s for name, s in nodes.items() if name.startswith("cluster-")}
    assert set(parts) == {
        "cluster-setup",
        "cluster-collector",
        "cluster-processor",
        "cluster-sink",
        "cluster-gateway",
    }
    for name, service in parts.items():
        environment = service["environment"]
        assert environment["SEXTANT_CLICKHOUSE_CLUSTER"] == "sextant", name
        assert environment["SEXTANT_TOPIC_PREFIX"] == "sextant-cluster", name
        assert environment["SEXTANT_SINK_MIGRATE"] == "false", name
    assert "sextant migrate" in " ".join(parts["cluster-setup"]["entrypoint"])


def test_the_profile_keeps_the_parts_sql_unchanged_and_inserts_durable() -> None:
    profile = ET.parse(CLUSTER / "profile.xml").getroot().find("./profiles/default")
    assert profile is not None
    assert profile.findtext("distributed_product_mode") == "global"
    assert profile.findtext("distributed_foreground_insert") == "1"
    assert profile.findtext("insert_quorum") == "2"

"""A local Kafka cluster for tests and benchmarks: three KRaft nodes (each a combined broker and
controller, started by ``deploy/local/kafka.sh``), any of which can be killed and restarted.

Every node votes in the controller quorum, so the cluster keeps a controller while a majority
of them runs, and Sextant's topics (three replicas, two in sync for a write) keep accepting
writes while one node is down.
"""

from __future__ import annotations

import base64
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sextant.core.kafka_cluster import ClusterState, cluster_state
from sextant.core.settings import KafkaSection
from tests.infra import LocalBroker, free_port, wait_for


class LocalCluster:
    """``size`` nodes on free loopback ports under ``data_dir``; node ids are 1..size."""

    def __init__(self, data_dir: Path, size: int = 3, heap: str = "512m") -> None:
        self.data_dir = data_dir
        self.size = size
        self.heap = heap
        self._lay_out()

    def _lay_out(self) -> None:
        """Nodes on ports free now, with a new cluster id and empty data folders."""
        shutil.rmtree(self.data_dir, ignore_errors=True)
        ports = _free_ports(self.size)
        voters = ",".join(f"{n}@127.0.0.1:{port + 1}" for n, port in enumerate(ports, start=1))
        cluster_id = _cluster_id()
        self.nodes: dict[int, LocalBroker] = {
            n: LocalBroker(
                self.data_dir / f"node-{n}",
                port,
                ("--node", str(n), "--voters", voters, "--cluster-id", cluster_id),
                self.heap,
            )
            for n, port in enumerate(ports, start=1)
        }
        self.bootstrap = ",".join(node.bootstrap for node in self.nodes.values())

    def start(self, timeout_s: float = 120.0, attempts: int = 3) -> None:
        """Start every node; on a shared machine a port found free can be taken before the
        node binds it, so a node that cannot bind makes a new layout (``attempts`` times)."""
        for attempt in range(1, attempts + 1):
            for node in self.nodes.values():
                node.launch()
            try:
                for node in self.nodes.values():
                    node.wait_ready(timeout_s)
                break
            except RuntimeError as exc:
                if "Address already in use" not in str(exc) or attempt == attempts:
                    raise
                self.stop()
                self._lay_out()
        wait_for(
            lambda: len(self.state().brokers) == len(self.nodes),
            timeout_s,
            0.5,
            "every broker registered",
        )

    def state(self, topics: list[str] | None = None) -> ClusterState:
        return cluster_state(KafkaSection(kafka_bootstrap=self.bootstrap), topics or [])

    def state_once_known(self, topics: list[str]) -> ClusterState:
        """:meth:`state` once the node asked lists every topic of ``topics`` (a topic made a
        moment ago reaches the nodes' metadata asynchronously; its partitions come at once)."""

        def known() -> ClusterState | None:
            state = self.state(topics)
            return state if {p.topic for p in state.partitions} >= set(topics) else None

        return wait_for(known, 60, 0.2, f"{topics} known")

    def kill(self, node_id: int) -> None:
        """``kill -9`` one node."""
        self.nodes[node_id].stop(kill=True)

    def restart(self, node_id: int, timeout_s: float = 120.0) -> None:
        self.nodes[node_id].start(timeout_s)

    def stop(self) -> None:
        """Every node at once: the last one left alone waits a minute for a quorum otherwise."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda node: node.stop(), self.nodes.values()))


def _free_ports(count: int) -> list[int]:
    """``count`` ports, each with the next one free too, all different."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if not any(abs(port - taken) <= 1 for taken in ports):
            ports.append(port)
    return ports


def _cluster_id() -> str:
    """A Kafka cluster id: a UUID in URL-safe base64. Like Kafka's own ``Uuid.randomUuid``,
    never one that starts with ``-``, which the storage tool's parser takes for an option."""
    while True:
        found = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not found.startswith("-"):
            return found

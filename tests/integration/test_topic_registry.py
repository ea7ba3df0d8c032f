"""The topic registry is true: every part, run as a process, reads and writes exactly the
topics ``sextant.schemas.topics`` says it does (its ``/metrics`` lists the topics its adapters
were built for, ``sextant_topic_use``).

The command line (``cli``) is not a long-running part: its entries are checked by reading the
commands' code paths in ``tests/unit`` instead (config apply writes the config topic,
``sextant metrics backfill`` writes ``metric_points``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sextant.core.config_plane import ConfigPublisher
from sextant.core.kafka import ensure_topics
from sextant.core.secrets import generate_secret_key
from sextant.core.settings import KafkaSection
from sextant.schemas.config import Project
from sextant.schemas.topics import (
    TOPICS,
    Topic,
    internal_topic_name,
    processor_group,
    topic_name,
)
from tests.infra import free_port, wait_for

PARTS = {
    "collector": "SEXTANT_COLLECTOR_PORT",
    "processor": "SEXTANT_PROCESSOR_PORT",
    "sink": "SEXTANT_SINK_PORT",
    "gateway": "SEXTANT_GATEWAY_PORT",
    "notifier": "SEXTANT_NOTIFIER_PORT",
}
_USE = re.compile(r'^sextant_topic_use\{role="(\w+)",topic="([^"]+)"\} 1\.0$', re.MULTILINE)


def expected(part: str) -> set[tuple[Topic, str]]:
    """What the registry says ``part`` reads and writes."""
    found: set[tuple[Topic, str]] = set()
    for topic, spec in TOPICS.items():
        if part in spec.consumers:
            found.add((topic, "reads"))
        if part in spec.producers:
            found.add((topic, "writes"))
    return found


def full_name(topic: Topic, prefix: str) -> str:
    if TOPICS[topic].internal:
        return internal_topic_name(topic, processor_group(prefix))
    return topic_name(topic, prefix)


@pytest.fixture
def parts(kafka_settings: KafkaSection, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Every part as a process of its own (the gateway without a sink inside); their URLs."""
    publisher = ConfigPublisher(kafka_settings)
    publisher.put([Project(id="p", project_id="p", name="P")])
    publisher.close()
    ensure_topics(kafka_settings)
    base = os.environ | {
        "SEXTANT_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
        "SEXTANT_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "SEXTANT_SECRET_KEY": generate_secret_key(),
        "SEXTANT_PROCESSOR_DATA_DIR": str(tmp_path / "processor"),
        "SEXTANT_LOG_LEVEL": "WARNING",
    }
    processes: list[subprocess.Popen[bytes]] = []
    urls: dict[str, str] = {}
    try:
        for part, port_variable in PARTS.items():
            port = free_port()
            env = base | {
                port_variable: str(port),
                "SEXTANT_CLICKHOUSE_URL": f"chdb://{tmp_path / part}",
            }
            log = (tmp_path / f"{part}.log").open("wb")
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", f"sextant.{part}"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            urls[part] = f"http://127.0.0.1:{port}"
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def used(url: str, prefix: str) -> set[tuple[Topic, str]] | None:
    """The topics a part reports, as registry topics (None while it does not answer)."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    names = {full_name(topic, prefix): topic for topic in Topic}
    found = set()
    for role, name in _USE.findall(text):
        assert name in names, f"{url} uses {name}, which is not in the registry"
        found.add((names[name], role))
    return found


def test_every_part_reads_and_writes_what_the_registry_says(
    parts: dict[str, str], kafka_settings: KafkaSection, tmp_path: Path
) -> None:
    prefix = kafka_settings.topic_prefix
    for part, url in parts.items():
        want = expected(part)

        def matches(url: str = url, want: set[tuple[Topic, str]] = want) -> bool:
            return used(url, prefix) == want

        try:
            wait_for(matches, 120, 0.5, f"{part}'s topics")
        except TimeoutError:
            log = (tmp_path / f"{part}.log").read_text()[-2000:]
            raise AssertionError(
                f"{part}: uses {used(url, prefix)}, the registry says {want}\n{log}"
            ) from None


def test_the_command_line_is_in_the_registry_as_what_it_runs() -> None:
    """``sextant config apply`` and ``bootstrap`` write and read the config topic (and audit
    what they wrote); ``sextant metrics backfill`` writes metric points."""
    assert expected("cli") == {
        (Topic.CONFIG, "reads"),
        (Topic.CONFIG, "writes"),
        (Topic.AUDIT, "writes"),
        (Topic.METRIC_POINTS, "writes"),
    }

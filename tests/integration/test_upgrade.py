"""An upgrade from the previous release's data to this version, and back.

The repository has no release tags; the previous release is taken as commit ``7baca7b`` (the
merge that brought the current set of warehouse migrations, 0001 to 0007, to main:
docs/decisions/scale-out.md). Its code, from ``git archive``, runs as processes beside this
version's, on the same broker, topics and embedded warehouse:

1. the previous version creates the topics, migrates the warehouse, applies a config file and
   writes events (as its sink would);
2. this version runs ``sextant topics`` and ``sextant migrate`` over that (nothing to change:
   an edited migration would be refused by its checksum), reads every document and event,
   and writes a document and an event of its own;
3. the previous version again migrates (nothing) and reads everything, this version's
   writes included.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import uuid
from io import BytesIO
from pathlib import Path

import orjson
import pytest

from sextant.core.secrets import generate_secret_key
from sextant.core.settings import KafkaSection

REPO = Path(__file__).resolve().parents[2]
PREVIOUS = "7baca7b"
SOURCES = ("schemas/src", "services/core/src", "services/cli/src")
CONFIG = """
projects:
  - id: shop
    name: Shop
    keys: [{id: web, kind: write, secret: sx_write_upgrade_000000000}]
    metrics: [{id: orders, metric_kind: count, event: Order Completed}]
"""
LATER = """
projects:
  - id: shop
    name: Shop
    metrics: [{id: revenue, metric_kind: sum, event: Order Completed, property: revenue}]
"""
READ = """
import sys, orjson
from sextant.core.config_plane import ConfigFollower
from sextant.core.settings import KafkaSection
from sextant.core.warehouse import connect
import sextant.core
follower = ConfigFollower(KafkaSection()).start()
assert follower.wait_caught_up(30)
keys = sorted(d.config_key() for d in follower.state.documents())
follower.stop()
rows = connect(sys.argv[1]).query_rows(
    "SELECT message_id, event FROM events_unique ORDER BY message_id")
with open(sys.argv[2], "wb") as out:  # not stdout: the parts' logs may go there
    out.write(orjson.dumps({"code": sextant.core.__file__, "keys": keys,
                            "events": [list(r) for r in rows]}))
"""
WRITE = """
import sys
from datetime import UTC, datetime
from sextant.core.warehouse import connect
now = datetime.now(UTC).isoformat()
row = ('{"project_id": "shop", "event": "Order Completed", "timestamp": "%s", '
       '"distinct_id": "u1", "message_id": "%s", "type": "track", "received_at": "%s"}'
       % (now, sys.argv[2], now))
connect(sys.argv[1]).insert_json("events", row.encode(), [
    "project_id", "event", "timestamp", "distinct_id", "message_id", "type", "received_at"])
"""


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous release's source tree."""
    folder = tmp_path_factory.mktemp("previous")
    archive = subprocess.run(
        ["git", "archive", PREVIOUS, *SOURCES, "schemas/clickhouse"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


class Version:
    """One version's code, run as processes (the embedded engine binds a process to a path)."""

    def __init__(self, env: dict[str, str], tree: Path | None) -> None:
        self.env = env | (
            {"PYTHONPATH": os.pathsep.join(str(tree / s) for s in SOURCES)} if tree else {}
        )
        self.tree = tree

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, *args], env=self.env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def cli(self, *args: str) -> str:
        return self.run("-m", "sextant.cli.main", *args)

    def read(self, warehouse: str, scratch: Path) -> dict[str, object]:
        self.run("-c", READ, warehouse, str(scratch))
        found: dict[str, object] = orjson.loads(scratch.read_bytes())
        where = str(found["code"])
        assert where.startswith(str(self.tree)) if self.tree else str(REPO) in where
        return found


def test_previous_release_to_this_one_and_back(
    kafka_bootstrap: str, previous: Path, tmp_path: Path
) -> None:
    kafka = KafkaSection(kafka_bootstrap=kafka_bootstrap, topic_prefix=f"u{uuid.uuid4().hex[:8]}")
    warehouse = f"chdb://{tmp_path / 'warehouse'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEXTANT_")} | {
        "SEXTANT_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap,
        "SEXTANT_TOPIC_PREFIX": kafka.topic_prefix,
        "SEXTANT_CLICKHOUSE_URL": warehouse,
        "SEXTANT_SECRET_KEY": generate_secret_key(),
        "SEXTANT_CONFIG_WAIT_SECONDS": "30",
    }
    (tmp_path / "config.yaml").write_text(CONFIG)
    (tmp_path / "later.yaml").write_text(LATER)
    old, new = Version(env, previous), Version(env, None)

    old.cli("topics", "--partitions", "3")
    old.cli("migrate")
    old.cli("config", "apply", str(tmp_path / "config.yaml"))
    old.run("-c", WRITE, warehouse, "m-old")
    before = old.read(warehouse, tmp_path / "read.json")
    assert before["events"] == [["m-old", "Order Completed"]]

    # Upgrade: nothing to create or migrate, everything readable.
    new.cli("topics")
    new.cli("migrate")
    upgraded = new.read(warehouse, tmp_path / "read.json")
    assert upgraded["keys"] == before["keys"]
    assert upgraded["events"] == before["events"]
    new.cli("config", "apply", str(tmp_path / "later.yaml"))
    new.run("-c", WRITE, warehouse, "m-new")

    # And back: the previous version reads what this one wrote.
    old.cli("migrate")
    downgraded = old.read(warehouse, tmp_path / "read.json")
    # A document this version wrote is read by the previous one when it uses only fields the
    # previous one knows (the config topic holds fields that differ from their defaults).
    assert downgraded["keys"] == sorted([*before["keys"], "metric:shop:revenue"])  # type: ignore[misc]
    assert downgraded["events"] == [["m-new", "Order Completed"], ["m-old", "Order Completed"]]

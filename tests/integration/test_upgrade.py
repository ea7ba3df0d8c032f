"""An upgrade from the previous release's data to this version, and back.

The repository has no release tags; the previous release is taken as commit ``7baca7b`` (the
merge that brought the current set of warehouse migrations, 0001 to 0007, to main:
docs/decisions/scale-out.md). Its code, from ``git archive``, runs as processes beside this
version's, on the same broker, topics and embedded warehouse:

1. the previous version creates the topics, migrates the warehouse, applies a config file and
   writes an event (as its sink would), and reads them back;
2. this version does the same over that (nothing to create or migrate: an edited migration
   would be refused by its checksum), with a document and an event of its own, and reads
   everything;
3. the previous version again: it reads everything, this version's writes included.

Each step is one process of one version (``STEP``: what ``sextant topics``, ``sextant
migrate`` and ``sextant config apply`` do, through the same functions).
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
STEP = """
import sys, orjson
from datetime import UTC, datetime
from pathlib import Path
import sextant.core
from sextant.core.config_file import documents_from_file, load_config_file
from sextant.core.config_plane import ConfigFollower, ConfigPublisher
from sextant.core.kafka import ensure_topics
from sextant.core.migrations import migrate
from sextant.core.secrets import SecretBox, seal_documents
from sextant.core.settings import KafkaSection, SecretsSection
from sextant.core.warehouse import connect

# What `sextant topics`, `sextant migrate` and `sextant config apply` do, then an event as
# the sink writes it, then everything read back: one process, one version's code.
warehouse_url, config, message_id, out = sys.argv[1:5]
kafka = KafkaSection()
ensure_topics(kafka, partitions=3)
warehouse = connect(warehouse_url)
migrate(warehouse)
box = SecretBox.from_setting(SecretsSection().secret_key)
publisher = ConfigPublisher(kafka)
publisher.put(seal_documents(documents_from_file(load_config_file(Path(config))), box))
publisher.close()
now = datetime.now(UTC).isoformat()
row = {"project_id": "shop", "event": "Order Completed", "timestamp": now, "distinct_id": "u1",
       "message_id": message_id, "type": "track", "received_at": now}
warehouse.insert_json("events", orjson.dumps(row), list(row))
follower = ConfigFollower(kafka).start()
assert follower.wait_caught_up(30)
keys = sorted(d.config_key() for d in follower.state.documents())
follower.stop()
events = warehouse.query_rows("SELECT message_id FROM events_unique ORDER BY message_id")
with open(out, "wb") as target:  # not stdout: the parts' logs may go there
    target.write(orjson.dumps({"code": sextant.core.__file__, "keys": keys,
                               "events": [r[0] for r in events]}))
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

    def step(self, warehouse: str, config: Path, message_id: str, out: Path) -> dict[str, object]:
        """Topics, migrations, config, an event written; then every document and event read."""
        self.run("-c", STEP, warehouse, str(config), message_id, str(out))
        found: dict[str, object] = orjson.loads(out.read_bytes())
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
    read = tmp_path / "read.json"

    before = old.step(warehouse, tmp_path / "config.yaml", "m-old", read)
    assert before["events"] == ["m-old"]
    keys = before["keys"]
    assert isinstance(keys, list)
    assert "metric:shop:orders" in keys

    # Upgrade: the previous version's topics, tables (the ledger's checksums included: an
    # edited migration is refused) and documents, read and written by this one.
    upgraded = new.step(warehouse, tmp_path / "later.yaml", "m-new", read)
    assert upgraded["keys"] == sorted([*keys, "metric:shop:revenue"])
    assert upgraded["events"] == ["m-new", "m-old"]

    # And back: the previous version reads what this one wrote. A document of this version
    # is read by the previous one when it uses only fields the previous one knows (the
    # config topic holds the fields that differ from their defaults).
    downgraded = old.step(warehouse, tmp_path / "config.yaml", "m-old-again", read)
    assert downgraded["keys"] == upgraded["keys"]
    assert downgraded["events"] == ["m-new", "m-old", "m-old-again"]

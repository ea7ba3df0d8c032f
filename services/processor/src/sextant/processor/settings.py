"""The processor's one settings class (environment variables ``SEXTANT_<FIELD>``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from sextant.core.settings import LOCAL_DIR, KafkaSection, ServiceSection
from sextant.schemas.topics import Topic, internal_topic_name, processor_group


class ProcessorSettings(KafkaSection, ServiceSection):
    processor_port: int = 8083
    processor_flush_interval_seconds: float = 0.1
    """Stage one sends the partials of open windows at most this often (and at least this
    often while they change)."""
    processor_merge_interval_seconds: float = 0.05
    """Stage two sends the points of the partials it received at most this long after the
    first of them."""
    processor_batch_max: int = 5_000
    processor_commit_interval_seconds: float = 1.0
    processor_dedup_window_seconds: float = 600.0
    """A ``messageId`` seen again within this many seconds (of ``received_at``) is a retry."""
    processor_dedup_max_ids: int = 500_000
    """Upper bound of remembered ``messageId`` values per partition."""
    processor_merge_idle_seconds: float = 120.0
    processor_session_timeout_seconds: float = 30.0
    """How long a silent worker keeps its partitions before the group rebalances them away."""
    processor_max_rebalance_seconds: float = 300.0
    """A worker still rebalancing or restoring its tables after this long exits (exit code
    75) for its supervisor to restart it: faust's recovery can stall for good."""
    processor_stop_seconds: float = Field(default=30.0, gt=0)
    """A worker asked to stop (SIGTERM, SIGINT) that has not finished this long after exits at
    once (exit code 1): with Kafka gone, faust's shutdown waits for the broker for ever. This
    is a crash as far as the data goes, and a crash loses nothing: what was not committed is
    read again by the next worker."""
    processor_changelog_segment_seconds: float = Field(default=60.0, gt=0)
    """The tables' changelogs start a new segment this often, and the broker's cleaner
    compacts the closed ones: a restarting worker replays the tables' current entries plus at
    most this long of writes, not everything written since the topic was created."""
    processor_changelog_tombstone_seconds: float = Field(default=600.0, gt=0)
    """How long the cleaner keeps a deleted entry's tombstone. Every flush writes a key of
    its own (the ``messageId`` values it saw) and deletes it once the dedup window passed, so
    with Kafka's default (a day) a replay would read a day of tombstones. A restoring worker
    must read the changelog to its end within this time, so it is at least twice the longest
    restore allowed (``processor_max_rebalance_seconds``, after which the worker starts
    again)."""
    processor_fetch_min_bytes: int = Field(default=32 * 1024, ge=1)
    """The broker answers the worker's fetch once it has this many bytes ..."""
    processor_fetch_max_wait_ms: int = Field(default=25, ge=0)
    """... or has waited this long (each of the two stages may add this to freshness)."""
    processor_linger_ms: float = Field(default=5.0, ge=0)
    """The producer waits this long to put more records in one request to the broker."""
    processor_faust_streams: bool = False
    """Read records through faust's own streams (agents) instead of straight from its fetched
    batches: slower, public API only; the baseline of ``python -m bench.processor_consumer``."""
    processor_experiment_statistics: bool = True
    """Stream each configured experiment's sufficient statistics (topic
    ``experiment_statistics``), so the gateway answers its results without the events table."""
    processor_person_max_ids: int = Field(default=1_000, ge=2)
    """A merge that would give one person more ids than this is refused (and recorded)."""
    processor_deletion_settle_seconds: float = Field(default=60.0, ge=0)
    """A person's deletion is applied to the state as soon as it is seen, and again this long
    after it was requested (events in flight when it came have been applied by then); the
    second pass reports each partition done."""
    processor_data_dir: Path = LOCAL_DIR / "processor"
    processor_group: str = ""
    """Consumer group (faust app id); default ``<topic_prefix>-processor``."""

    @property
    def app_id(self) -> str:
        return self.processor_group or processor_group(self.topic_prefix)

    @property
    def tombstone_seconds(self) -> float:
        """How long the changelogs keep tombstones (see the setting)."""
        return max(
            self.processor_changelog_tombstone_seconds, 2 * self.processor_max_rebalance_seconds
        )

    def changelog_config(self) -> dict[str, str]:
        """Settings of the tables' changelog topics (compacted, as faust makes them)."""
        return {
            "cleanup.policy": "compact",
            "segment.ms": str(int(self.processor_changelog_segment_seconds * 1000)),
            "min.cleanable.dirty.ratio": "0.1",
            "min.compaction.lag.ms": "0",
            "delete.retention.ms": str(int(self.tombstone_seconds * 1000)),
        }

    @property
    def partials_topic(self) -> str:
        """The internal topic from stage one (per-partition partials) to stage two (merge)."""
        return internal_topic_name(Topic.PARTIALS, self.app_id)

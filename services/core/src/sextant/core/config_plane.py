"""The config plane: follow the compacted ``config`` topic into memory, and write to it.

Every part keeps a :class:`ConfigState` current with a :class:`ConfigFollower` thread, so a
key revoked or a metric defined through the admin API takes effect everywhere within seconds,
without a restart.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

import orjson
from pydantic import ValidationError

from sextant.core.background import BackgroundLoop
from sextant.core.kafka import TopicReader, make_producer, note_use
from sextant.core.logging import get_logger
from sextant.core.progress import ConsumerProgress
from sextant.core.settings import KafkaSection
from sextant.schemas.config import (
    CONFIG_DOCUMENT,
    ApiKey,
    ConfigDocument,
    ConfigKind,
    Experiment,
    Feature,
    MetricDefinition,
    Project,
    parse_config_key,
)
from sextant.schemas.topics import Topic, topic_name

log = get_logger(__name__)
DocumentT = TypeVar("DocumentT", bound=ConfigDocument)
Listener = Callable[[str, ConfigDocument | None], None]


class ConfigState:
    """The current config documents, by ``kind:project_id:id`` key. Safe to read from any thread."""

    def __init__(self) -> None:
        self._documents: dict[str, ConfigDocument] = {}
        self._keys_by_hash: dict[str, ApiKey] = {}
        self._refused_hashes: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self.version = 0

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(key, document_or_None)`` after every change."""
        self._listeners.append(listener)

    def apply(self, key: str, document: ConfigDocument | None) -> None:
        with self._lock:
            old = self._documents.pop(key, None)
            if isinstance(old, ApiKey):
                self._keys_by_hash.pop(old.key_hash, None)
            if document is not None:
                self._documents[key] = document
                if isinstance(document, ApiKey):
                    self._keys_by_hash[document.key_hash] = document
            self.version += 1
        for listener in self._listeners:
            listener(key, document)

    def get(self, key: str) -> ConfigDocument | None:
        return self._documents.get(key)

    def key_for_hash(self, key_hash: str) -> ApiKey | None:
        """The API key whose secret hashes to ``key_hash``, revoked or not; never one of the
        refused keys (:meth:`refuse_keys`)."""
        if key_hash in self._refused_hashes:
            return None
        return self._keys_by_hash.get(key_hash)

    def refuse_keys(self, key_hashes: frozenset[str]) -> None:
        """Keys with these hashes never authenticate here, whatever the topic says (the
        public demo keys, outside a demo)."""
        self._refused_hashes = key_hashes

    def documents(self) -> list[ConfigDocument]:
        """Every current document."""
        with self._lock:
            return list(self._documents.values())

    def of_kind(self, cls: type[DocumentT], project_id: str | None = None) -> list[DocumentT]:
        with self._lock:
            documents = list(self._documents.values())
        return [
            d
            for d in documents
            if isinstance(d, cls) and (project_id is None or d.project_id == project_id)
        ]

    def project(self, project_id: str) -> Project | None:
        document = self._documents.get(f"{ConfigKind.PROJECT.value}:{project_id}:{project_id}")
        return document if isinstance(document, Project) else None

    def metrics(self, project_id: str | None = None) -> list[MetricDefinition]:
        return self.of_kind(MetricDefinition, project_id)

    def experiments(self, project_id: str | None = None) -> list[Experiment]:
        return self.of_kind(Experiment, project_id)

    def features(self, project_id: str | None = None) -> list[Feature]:
        return self.of_kind(Feature, project_id)


def decode_record(key: bytes | None, value: bytes | None) -> tuple[str, ConfigDocument | None]:
    """A config record as (key, document); a tombstone has no document."""
    if key is None:
        raise ValueError("config records must have a key")
    text_key = key.decode()
    parse_config_key(text_key)
    if value is None:
        return text_key, None
    return text_key, CONFIG_DOCUMENT.validate_json(value)


class ConfigFollower(BackgroundLoop):
    """A background loop that reads the config topic from the beginning and keeps following it.

    Its progress is reported under ``config`` (see :mod:`sextant.core.progress`).
    """

    name = "config-follower"

    def __init__(
        self,
        settings: KafkaSection,
        state: ConfigState | None = None,
        *,
        progress: ConsumerProgress | None = None,
    ) -> None:
        super().__init__(progress=progress, retry_initial_s=1.0, retry_max_s=5.0)
        self.settings = settings
        self.state = state or ConfigState()
        self.topic = topic_name(Topic.CONFIG, settings.topic_prefix)
        self._caught_up = threading.Event()

    def start(self) -> ConfigFollower:  # type: ignore[override]
        super().start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        super().stop(timeout_s)

    def wait_caught_up(self, timeout_s: float) -> bool:
        """Block until everything on the topic at start-up has been read."""
        return self._caught_up.wait(timeout_s)

    @property
    def caught_up(self) -> bool:
        return self._caught_up.is_set()

    @property
    def healthy(self) -> bool:
        """A session is connected to the broker."""
        return self.ready()

    def session(self) -> None:
        reader = TopicReader(self.settings, self.topic)
        try:
            partitions = reader.assign(30.0, self.stopping)
            if not partitions:
                return
            # Every (re)connect reads from the start: compaction keeps the latest document per
            # key, and applying a document again is harmless.
            reader.seek_to_beginning()
            end = reader.end_offsets()
            self.connected()
            while not self.stopping.is_set():
                records = reader.poll(0.5)
                for record in records:
                    self._apply(record.key, record.value)
                for partition in partitions:
                    position = reader.position(partition)
                    if records:
                        self.progress.moved(partition, position)
                    highwater = reader.highwater(partition)
                    self.progress.waiting(
                        partition, (highwater - position) if highwater is not None else 0
                    )
                if all(reader.position(p) >= end.get(p, 0) for p in partitions):
                    self._caught_up.set()
        finally:
            reader.close()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        try:
            text_key, document = decode_record(key, value)
        except ValidationError as error:
            # The faults without the values: a record may hold a secret.
            faults = [
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                for e in error.errors(include_input=False, include_url=False)
            ]
            log.error("skipping an invalid config record", key=key, faults=faults)
            return
        except ValueError:
            log.error("skipping an unreadable config record", key=key, exc_info=True)
            return
        self.state.apply(text_key, document)


def encode_document(document: ConfigDocument) -> bytes:
    """A document as the config topic holds it: its kind and every field that differs from
    its default. A field added by a later version is written only when it is used, so the
    version before it still reads the documents this one writes (a rollback keeps them)."""
    body = {"kind": document.kind} | document.model_dump(mode="json", exclude_defaults=True)
    return orjson.dumps(body)


class ConfigPublisher:
    """Writes config documents (and tombstones) to the config topic, waiting for the broker."""

    def __init__(self, settings: KafkaSection) -> None:
        self.topic = topic_name(Topic.CONFIG, settings.topic_prefix)
        note_use(self.topic, "writes")
        self._producer = make_producer(settings)

    def put(self, documents: Iterable[ConfigDocument], timeout_s: float = 10.0) -> None:
        futures = [
            self._producer.send(
                self.topic,
                key=document.config_key().encode(),
                value=encode_document(document),
            )
            for document in documents
        ]
        self._producer.flush(timeout=timeout_s)
        for future in futures:
            future.get(timeout=timeout_s)

    def delete(self, key: str, timeout_s: float = 10.0) -> None:
        parse_config_key(key)
        self._producer.send(self.topic, key=key.encode(), value=None).get(timeout=timeout_s)

    def close(self) -> None:
        self._producer.close(timeout=5)

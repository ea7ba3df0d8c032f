"""The config plane: follow the compacted ``config`` topic into memory, and write to it.

Every part keeps a :class:`ConfigState` current with a :class:`ConfigFollower` thread, so a
key revoked or a metric defined through the admin API takes effect everywhere within seconds,
without a restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

import orjson
from kafka import KafkaConsumer, TopicPartition
from pydantic import ValidationError

from sextant.core.kafka import make_consumer, make_producer
from sextant.core.logging import get_logger
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


class ConfigFollower:
    """A daemon thread that reads the config topic from the beginning and keeps following it."""

    def __init__(self, settings: KafkaSection, state: ConfigState | None = None) -> None:
        self.settings = settings
        self.state = state or ConfigState()
        self.topic = topic_name(Topic.CONFIG, settings.topic_prefix)
        self._caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="config-follower", daemon=True)
        self.healthy = False

    def start(self) -> ConfigFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def wait_caught_up(self, timeout_s: float) -> bool:
        """Block until everything on the topic at start-up has been read."""
        return self._caught_up.wait(timeout_s)

    @property
    def caught_up(self) -> bool:
        return self._caught_up.is_set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception:
                self.healthy = False
                log.warning("config follower lost the broker; retrying", exc_info=True)
                self._stop.wait(1.0)

    def _follow(self) -> None:
        consumer: KafkaConsumer = make_consumer(self.settings, None)
        try:
            tp = self._assign(consumer)
            # Every (re)connect reads from the start: compaction keeps the latest document per
            # key, and applying a document again is harmless.
            consumer.seek_to_beginning(tp)
            end = consumer.end_offsets([tp])[tp]
            self.healthy = True
            while not self._stop.is_set():
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        self._apply(record.key, record.value)
                if consumer.position(tp) >= end:
                    self._caught_up.set()
        finally:
            consumer.close()

    def _assign(self, consumer: KafkaConsumer) -> TopicPartition:
        deadline = time.monotonic() + 30
        while not consumer.partitions_for_topic(self.topic):
            if time.monotonic() > deadline:
                raise RuntimeError(f"config topic {self.topic} does not exist")
            self._stop.wait(0.5)
        tp = TopicPartition(self.topic, 0)
        consumer.assign([tp])
        return tp

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

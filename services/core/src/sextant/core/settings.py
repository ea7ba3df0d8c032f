"""Settings sections shared by the parts. Each part composes its one settings class from these.

This package and the parts' ``settings.py`` files are the only code that reads the environment.
Every variable carries the ``SEXTANT_`` prefix: ``SEXTANT_KAFKA_BOOTSTRAP``,
``SEXTANT_CLICKHOUSE_URL``, ``SEXTANT_TOPIC_PREFIX``, ``SEXTANT_LOG_LEVEL`` …
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[5]
LOCAL_DIR = REPO_ROOT / ".local"


class SextantSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEXTANT_", extra="ignore", frozen=True)


class KafkaSection(SextantSettings):
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = "sextant"
    kafka_client_id: str = "sextant"


class ClickHouseSection(SextantSettings):
    clickhouse_url: str = f"chdb://{LOCAL_DIR / 'warehouse'}"
    clickhouse_cluster: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """A ClickHouse cluster's name (its ``remote_servers`` entry): ``sextant migrate`` then
    creates replicated tables on every shard and ``Distributed`` tables in front of them."""


class ServiceSection(SextantSettings):
    host: str = "127.0.0.1"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False
    config_wait_seconds: float = 30.0
    stall_seconds: float = Field(default=60.0, gt=0)
    """A consumer with records waiting that has not moved for this long is stalled: ``/readyz``
    says not ready and names it (``sextant.core.progress``)."""
    stall_restart_seconds: float = Field(default=300.0, ge=0)
    """A stall that lasts this long restarts the part through its shutdown path, for its
    supervisor to start it again (0: never)."""
    demo: bool = False
    """Run while the public demo keys of ``deploy/config/demo.yaml`` are active (``make run``,
    compose's ``demo`` profile); without it a part refuses to start while they are."""


class SecretsSection(SextantSettings):
    secret_key: SecretStr | None = None
    """The master key that seals the secrets the parts need in clear (webhook signing
    secrets): Fernet keys, comma-separated, newest first (``sextant.core.secrets``)."""

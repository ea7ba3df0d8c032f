"""Settings of the ``sextant`` command's own sub-commands (topics, migrate, config, bootstrap,
secrets)."""

from __future__ import annotations

from pydantic import Field

from sextant.core.settings import ClickHouseSection, KafkaSection, SecretsSection


class CliSettings(KafkaSection, ClickHouseSection, SecretsSection):
    config_wait_seconds: float = Field(default=30.0, gt=0)
    """How long a command that reads the config topic (bootstrap, secrets rotate) waits to
    have read it to its end."""

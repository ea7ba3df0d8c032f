"""Settings of the ``sextant`` command's own sub-commands (topics, migrate, config)."""

from __future__ import annotations

from sextant.core.settings import ClickHouseSection, KafkaSection


class CliSettings(KafkaSection, ClickHouseSection):
    pass

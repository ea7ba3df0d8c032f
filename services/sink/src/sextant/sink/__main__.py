"""``sextant sink``: the warehouse sink as its own process (for a ClickHouse server DSN)."""

from __future__ import annotations

from sextant.core.logging import configure_logging
from sextant.core.service import serve
from sextant.sink.app import create_app
from sextant.sink.settings import SinkSettings


def main() -> None:
    settings = SinkSettings()
    configure_logging(settings.log_level, settings.log_json, part="sink")
    serve(create_app(settings), settings.host, settings.sink_port, settings.log_level)


if __name__ == "__main__":
    main()

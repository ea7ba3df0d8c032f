"""``sextant collector``: serve the ingestion API until interrupted."""

from __future__ import annotations

from sextant.collector.app import create_app
from sextant.collector.settings import CollectorSettings
from sextant.collector.workers import supervise
from sextant.core.logging import configure_logging
from sextant.core.service import serve


def main() -> None:
    settings = CollectorSettings()
    configure_logging(settings.log_level, settings.log_json, part="collector")
    if settings.collector_workers == 1:
        serve(create_app(settings), settings.host, settings.collector_port, settings.log_level)
    else:
        supervise(settings)


if __name__ == "__main__":
    main()

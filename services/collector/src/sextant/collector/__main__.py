"""``sextant collector``: serve the ingestion API until interrupted."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from sextant.collector.app import create_app
from sextant.collector.settings import CollectorSettings
from sextant.core.logging import configure_logging
from sextant.core.service import serve


def worker_app() -> FastAPI:
    """The app of one worker process (``collector_workers`` > 1); settings from the environment."""
    settings = CollectorSettings()
    configure_logging(settings.log_level, settings.log_json, part="collector")
    return create_app(settings)


def main() -> None:
    settings = CollectorSettings()
    configure_logging(settings.log_level, settings.log_json, part="collector")
    if settings.collector_workers == 1:
        serve(create_app(settings), settings.host, settings.collector_port, settings.log_level)
        return
    uvicorn.run(
        "sextant.collector.__main__:worker_app",
        factory=True,
        host=settings.host,
        port=settings.collector_port,
        workers=settings.collector_workers,
        log_level=settings.log_level.lower(),
        access_log=False,
    )


if __name__ == "__main__":
    main()

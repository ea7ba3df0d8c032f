"""``sextant processor`` / ``python -m sextant.processor``."""

from __future__ import annotations

from sextant.core.logging import configure_logging
from sextant.processor.app import create_app
from sextant.processor.settings import ProcessorSettings


def main() -> None:
    settings = ProcessorSettings()
    configure_logging(settings.log_level, settings.log_json, part="processor")
    create_app(settings).run()


if __name__ == "__main__":
    main()

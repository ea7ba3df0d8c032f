"""``sextant processor`` / ``python -m sextant.processor``."""

from __future__ import annotations

from sextant.core.demo import DemoKeysActive
from sextant.core.logging import configure_logging
from sextant.processor.app import create_app
from sextant.processor.settings import ProcessorSettings


def main() -> None:
    settings = ProcessorSettings()
    configure_logging(settings.log_level, settings.log_json, part="processor")
    try:
        create_app(settings).run()
    except DemoKeysActive:
        raise SystemExit(2) from None  # the reason is logged


if __name__ == "__main__":
    main()

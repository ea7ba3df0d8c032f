"""``sextant notifier``: deliver alert transitions to webhooks until interrupted."""

from __future__ import annotations

from sextant.core.logging import configure_logging, get_logger
from sextant.core.secrets import MissingSecretKey, SecretKeyInvalid
from sextant.core.service import serve
from sextant.notifier.app import create_app
from sextant.notifier.settings import NotifierSettings


def main() -> None:
    settings = NotifierSettings()
    configure_logging(settings.log_level, settings.log_json, part="notifier")
    try:
        app = create_app(settings)
    except (MissingSecretKey, SecretKeyInvalid) as error:
        get_logger(__name__).error(str(error))
        raise SystemExit(2) from None
    serve(app, settings.host, settings.notifier_port, settings.log_level)


if __name__ == "__main__":
    main()

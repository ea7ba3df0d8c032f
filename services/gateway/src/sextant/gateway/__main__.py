"""``sextant gateway``: serve the read and admin APIs, live streams and the dashboard."""

from __future__ import annotations

from collections.abc import Sequence

from sextant.core.logging import configure_logging, get_logger
from sextant.core.secrets import SecretKeyInvalid
from sextant.core.service import BackgroundService, serve
from sextant.gateway.app import create_app
from sextant.gateway.settings import GatewaySettings


def main(background: Sequence[BackgroundService] = ()) -> None:
    """Run the gateway until interrupted; ``background`` services (the sink, when the
    warehouse is embedded) run in the same process and stop with it."""
    settings = GatewaySettings()
    configure_logging(settings.log_level, settings.log_json, part="gateway")
    try:
        app = create_app(settings, background)
    except SecretKeyInvalid as error:
        get_logger(__name__).error(str(error))
        raise SystemExit(2) from None
    serve(app, settings.host, settings.gateway_port, settings.log_level)


if __name__ == "__main__":
    main()

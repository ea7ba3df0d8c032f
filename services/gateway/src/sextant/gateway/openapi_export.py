"""Export the gateway's OpenAPI document to ``services/gateway/web/openapi.json`` (committed).

The workspace's TypeScript types (``web/src/api-schema.ts``) are generated from that file, so
the pages read the response models the gateway declares instead of copies of them.
``python -m sextant.gateway.openapi_export`` rewrites it (``make schemas`` does this and then
regenerates the TypeScript); a unit test fails when it drifts from the app.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sextant.gateway.app import create_app
from sextant.gateway.settings import GatewaySettings

OPENAPI_FILE = Path(__file__).resolve().parents[3] / "web" / "openapi.json"
REGENERATE = "make schemas"


def document() -> dict[str, Any]:
    """The app's OpenAPI document; building the app opens neither Kafka nor the warehouse."""
    settings = GatewaySettings(clickhouse_url="chdb:///nonexistent/never-opened")
    schema: dict[str, Any] = create_app(settings).openapi()
    return schema


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    OPENAPI_FILE.write_text(render(document()), encoding="utf-8")
    sys.stdout.write(f"wrote {OPENAPI_FILE}\n")


if __name__ == "__main__":
    main()

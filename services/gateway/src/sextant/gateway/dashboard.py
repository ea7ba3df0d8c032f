"""The workspace at ``/``: the static files ``services/gateway/web`` compiles (``make setup``).

``/`` answers ``index.html`` (never cached: it names the current bundles), ``/assets/<name>``
the bundles themselves (content-hashed names, cached for a year). The page is a single-page
app that signs in with the keys and reads the read API with them; the gateway renders
nothing per user. A gateway whose static files were never built says how to build them.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response

router = APIRouter()
STATIC = Path(str(files("sextant.gateway").joinpath("static")))
_ASSET = re.compile(r"^workspace-[0-9a-f]{10}\.(js|css)$")
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
_HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_NOT_BUILT = """<!doctype html><html lang="en"><meta charset="utf-8"><title>Sextant</title>
<body style="font:16px system-ui;margin:2rem"><h1>Sextant</h1>
<p>The workspace has not been built. Run <code>make setup</code> (it runs
<code>npm ci</code> and <code>npm run build</code> in <code>services/gateway/web</code>),
then reload. The API is at <a href="/docs">/docs</a>.</p></body></html>"""


@router.get("/", include_in_schema=False)
def workspace() -> Response:
    index = STATIC / "index.html"
    if not index.is_file():
        return HTMLResponse(_NOT_BUILT, status_code=503, headers=_HEADERS)
    return HTMLResponse(
        index.read_text(encoding="utf-8"), headers=_HEADERS | {"Cache-Control": "no-store"}
    )


@router.get("/assets/{name}", include_in_schema=False)
def asset(name: str) -> Response:
    path = STATIC / "assets" / name
    if not _ASSET.fullmatch(name) or not path.is_file():
        return Response(status_code=404)
    return FileResponse(
        path,
        media_type="text/javascript" if name.endswith(".js") else "text/css",
        headers=_HEADERS | {"Cache-Control": "public, max-age=31536000, immutable"},
    )

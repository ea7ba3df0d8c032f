"""The dashboard page at ``/``: a project's metrics, live.

The server renders the page: a form for the read key, or, once the browser holds a valid
key (a ``sextant_read_key`` cookie, scoped to this site), one card per metric of the key's
project. A little JavaScript then draws each metric's last hour from ``/series`` and keeps it
current from ``/live`` (read with ``fetch`` so the key travels in the ``Authorization``
header, and resumed with ``Last-Event-ID`` after a drop).
"""

from __future__ import annotations

import html
import secrets
from importlib.resources import files

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from sextant.gateway.context import GatewayDep
from sextant.schemas.config import KeyKind, MetricDefinition, hash_key

router = APIRouter()
COOKIE = "sextant_read_key"
_TEMPLATE = files("sextant.gateway").joinpath("dashboard.html").read_text(encoding="utf-8")


def _card(metric: MetricDefinition) -> str:
    name = html.escape(metric.name or metric.id)
    what = html.escape(f"{metric.metric_kind.value} of {metric.event}")
    if metric.property:
        what += html.escape(f" · {metric.property}")
    if metric.breakdown:
        what += html.escape(f" · by {metric.breakdown}")
    return (
        f'<section class="card" data-metric="{html.escape(metric.id)}" '
        f'data-kind="{metric.metric_kind.value}" '
        f'data-breakdown="{int(metric.breakdown is not None)}">'
        f'<h2>{name}</h2><p class="what">{what}</p>'
        '<p class="value">…</p><svg class="spark" viewBox="0 0 300 60" preserveAspectRatio="none">'
        '<polyline points="" /></svg><p class="status">connecting…</p></section>'
    )


def render(project_name: str | None, metrics: list[MetricDefinition], nonce: str) -> str:
    """The page: the key form when ``project_name`` is None, else the project's cards."""
    if project_name is None:
        body = (
            '<form id="login"><label>Read key <input name="key" type="password" '
            'autocomplete="off" required></label><button>Open</button></form>'
        )
        title = "Sextant"
    else:
        cards = "".join(_card(m) for m in sorted(metrics, key=lambda m: m.id))
        body = (
            f'<p class="project">{html.escape(project_name)} · '
            '<a href="#" id="logout">use another key</a></p>'
            f"<main>{cards or '<p>No metrics are defined for this project yet.</p>'}</main>"
        )
        title = f"Sextant · {html.escape(project_name)}"
    return (
        _TEMPLATE.replace("{{title}}", title).replace("{{body}}", body).replace("{{nonce}}", nonce)
    )


@router.get("/", include_in_schema=False)
def dashboard(request: Request, gateway: GatewayDep) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    secret = request.cookies.get(COOKIE, "")
    key = gateway.state.key_for_hash(hash_key(secret)) if secret else None
    project = None
    if key is not None and not key.revoked and key.key_kind is KeyKind.READ:
        project = gateway.state.project(key.project_id)
    page = render(
        project.name if project else None,
        gateway.state.metrics(project.id) if project else [],
        nonce,
    )
    policy = (
        f"default-src 'self'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'"
    )
    return HTMLResponse(
        page,
        headers={
            "Content-Security-Policy": policy,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )

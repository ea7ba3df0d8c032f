"""What browser clients read from the collector with a public write key.

* Segment's settings (``GET /v1/projects/{writeKey}/settings``), which analytics-next fetches
  from its CDN: pointed at the collector (``cdnURL``) it then posts here, with no hand-made
  settings.
* RudderStack's source configuration (``GET /sourceConfig/``), which its JavaScript SDK reads
  from ``configUrl`` before it sends: a source with no device-mode destinations.
* The experiments' assignment definitions (``GET /v1/experiments/definitions``), what
  ``@sextant/browser`` and the Python SDK assign from.
* PostHog's flags (``POST /flags/?v=2``, ``/decide/``) and remote config
  (``GET /array/{token}/config``, ``config.js``), so posthog-js's ``getFeatureFlag`` returns
  Sextant's variant, and its other features' endpoints answer "nothing here" rather than 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Path, Request, Response
from starlette.requests import ClientDisconnect

from sextant.collector import dialects
from sextant.collector.assignments import (
    posthog_flags,
    posthog_remote_config,
    public_definitions,
    variants_for,
)
from sextant.collector.body import decode_payload, read_limited
from sextant.collector.errors import ApiError, bad_request
from sextant.collector.gate import Call, Gate
from sextant.collector.routes import add_preflight, error_response
from sextant.core.config_plane import ConfigState

Work = Callable[[Request, Call], Awaitable[Response]]
KEY_PATTERN = r"^[A-Za-z0-9_\-.]{1,200}$"
EMPTY_LISTS: dict[str, dict[str, list[Any]]] = {
    "/api/surveys/": {"surveys": []},
    "/api/early_access_features/": {"earlyAccessFeatures": []},
    "/api/web_experiments/": {"experiments": []},
    "/api/product_tours/": {"product_tours": []},
}
"""posthog-js features Sextant does not have: each answers that there is nothing."""


def json_response(content: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), media_type="application/json", headers=headers)


class BrowserApi:
    def __init__(
        self,
        *,
        gate: Gate,
        state: ConfigState,
        max_body_bytes: int,
        trust_forwarded_for: bool,
        public_url: str | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.gate = gate
        self.state = state
        self.max_body_bytes = max_body_bytes
        self.trust_forwarded_for = trust_forwarded_for
        self.public_url = public_url.rstrip("/") if public_url else None
        self.clock = clock

    async def run(self, request: Request, work: Work) -> Response:
        """``work`` behind the gate: errors as answers, CORS headers where the origin may."""
        call = Call(origin=request.headers.get("origin"))
        try:
            call = self.gate.open(request)
            response = await work(request, call)
        except ApiError as error:
            response = error_response(error)
        return self.gate.answer(call, response)

    # --- Segment ----------------------------------------------------------------------------

    def segment_settings(self, request: Request, call: Call, write_key: str) -> Response:
        writer = self.gate.admit(call, write_key, "path writeKey")
        scheme, host = self._public_address(request)
        return json_response(
            {
                "integrations": {
                    "Segment.io": {
                        "apiKey": write_key,
                        "apiHost": f"{host}/v1",
                        "protocol": scheme,
                        "unbundledIntegrations": [],
                        "addBundledMetadata": True,
                        "maybeBundledConfigIds": {},
                    }
                },
                "plan": {"track": {"__default": {"enabled": True}}},
                "edgeFunction": {},
                "analyticsNextEnabled": True,
                "middlewareSettings": {},
                "enabledMiddleware": {},
                "metrics": {"sampleRate": 0},
                "legacyVideoPluginsEnabled": False,
                "remotePlugins": [],
                "project": {"id": writer.project.id, "name": writer.project.name},
            },
            headers={"Cache-Control": "public, max-age=60"},
        )

    def _public_address(self, request: Request) -> tuple[str, str]:
        """(scheme, host[:port]) clients reach this collector at."""
        if self.public_url is not None:
            scheme, _, host = self.public_url.partition("://")
            return scheme, host
        scheme, host = request.url.scheme, request.headers.get("host") or request.url.netloc
        if self.trust_forwarded_for:
            scheme = request.headers.get("x-forwarded-proto", scheme).split(",")[0].strip()
            host = request.headers.get("x-forwarded-host", host).split(",")[0].strip()
        return scheme, host

    # --- RudderStack --------------------------------------------------------------------------

    async def rudderstack_source_config(self, request: Request, call: Call) -> Response:
        writer = self.gate.admit(
            call, self.gate.header_key(request), "header Authorization / query writeKey"
        )
        project = writer.project
        return json_response(
            {
                "isHosted": False,
                "source": {
                    "id": project.id,
                    "name": project.name,
                    "workspaceId": project.id,
                    "enabled": True,
                    # The SDK would report its own errors and metrics to RudderStack: off.
                    "config": {
                        "statsCollection": {
                            "errors": {"enabled": False},
                            "metrics": {"enabled": False},
                        }
                    },
                    "destinations": [],
                },
            },
            headers={"Cache-Control": "public, max-age=60"},
        )

    # --- Sextant's own SDKs -----------------------------------------------------------------

    def definitions(self, request: Request, call: Call, if_none_match: str | None) -> Response:
        writer = self.gate.admit(call, self.gate.header_key(request), "header Authorization")
        body, etag = public_definitions(self.state, writer.project.id)
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if if_none_match == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    # --- PostHog ----------------------------------------------------------------------------

    async def posthog_flags(self, request: Request, call: Call, detailed: bool) -> Response:
        document = await self._posthog_body(request)
        if not isinstance(document, dict):
            raise bad_request("the body must be a JSON object with token and distinct_id")
        token = document.get("token") or document.get("api_key")
        writer = self.gate.admit(
            call, token if isinstance(token, str) else None, "body token / api_key"
        )
        distinct_id = document.get("distinct_id")
        if isinstance(distinct_id, int) and not isinstance(distinct_id, bool):
            distinct_id = str(distinct_id)
        if not isinstance(distinct_id, str) or not distinct_id:
            raise bad_request("distinct_id is required (a non-empty string)", "body.distinct_id")
        variants = variants_for(self.state, writer.project.id, distinct_id, self.clock())
        answer = posthog_flags(variants, detailed=detailed)
        if not detailed or request.query_params.get("config") == "true":
            answer |= posthog_remote_config(str(token), bool(variants))
        return json_response(answer)

    async def _posthog_body(self, request: Request) -> Any:
        try:
            body = await read_limited(
                request.stream(),
                limit=self.max_body_bytes,
                content_length=request.headers.get("content-length"),
                content_encoding=request.headers.get("content-encoding"),
            )
        except ClientDisconnect as error:
            raise bad_request("the client left before the body ended") from error
        body = decode_payload(
            body,
            limit=self.max_body_bytes,
            content_type=request.headers.get("content-type"),
            compression=request.query_params.get("compression"),
        )
        return dialects.parse_json(body)

    def posthog_config(self, call: Call, token: str, script: bool) -> Response:
        writer = self.gate.admit(call, token, "path token")
        has_flags = bool(self.state.experiments(writer.project.id))
        config = posthog_remote_config(token, has_flags)
        if not script:
            return json_response(config, headers={"Cache-Control": "public, max-age=60"})
        # What posthog-js loads as a script: the config, registered for its token.
        payload = orjson.dumps({"config": config, "siteApps": []}).decode()
        source = (
            "(function(){window._POSTHOG_REMOTE_CONFIG=window._POSTHOG_REMOTE_CONFIG||{};"
            f"window._POSTHOG_REMOTE_CONFIG[{orjson.dumps(token).decode()}]={payload};}})();"
        )
        return Response(
            source,
            media_type="application/javascript",
            headers={"Cache-Control": "public, max-age=60"},
        )

    def posthog_nothing(self, request: Request, call: Call, path: str) -> Response:
        token = request.query_params.get("token") or request.query_params.get("api_key")
        self.gate.admit(call, token, "query token")
        return json_response(EMPTY_LISTS[path])


def build_browser_router(api: BrowserApi) -> APIRouter:
    router = APIRouter()
    gate = api.gate

    @router.get(
        "/v1/projects/{write_key}/settings",
        tags=["segment"],
        summary="Segment's settings for analytics-next (point its cdnURL at the collector)",
    )
    async def segment_settings(
        request: Request, write_key: Annotated[str, Path(pattern=KEY_PATTERN)]
    ) -> Response:
        async def work(request: Request, call: Call) -> Response:
            return api.segment_settings(request, call, write_key)

        return await api.run(request, work)

    async def rudderstack_source_config(request: Request) -> Response:
        return await api.run(request, api.rudderstack_source_config)

    router.add_api_route(
        "/sourceConfig/",
        rudderstack_source_config,
        methods=["GET"],
        tags=["rudderstack"],
        summary="RudderStack's source configuration (point the JavaScript SDK's configUrl at "
        "the collector)",
        description="Write key as the Basic username or `?writeKey=`.",
    )
    router.add_api_route(
        "/sourceConfig", rudderstack_source_config, methods=["GET"], include_in_schema=False
    )

    @router.get(
        "/v1/experiments/definitions",
        tags=["experiments"],
        summary="The project's experiments as the SDKs assign them (write key)",
        description="Write key as the Basic username, a Bearer token or `?writeKey=`. "
        "Answers 304 to a matching `If-None-Match`.",
    )
    async def definitions(
        request: Request,
        if_none_match: Annotated[str | None, Header(alias="If-None-Match", max_length=200)] = None,
    ) -> Response:
        async def work(request: Request, call: Call) -> Response:
            return api.definitions(request, call, if_none_match)

        return await api.run(request, work)

    for path, detailed in (("/flags/", True), ("/decide/", False)):
        _add_flags_route(router, api, path, detailed)

    for suffix, script in (("config", False), ("config.js", True)):
        _add_config_route(router, api, suffix, script)

    for path in EMPTY_LISTS:
        _add_nothing_route(router, api, path)

    for path in (
        "/v1/projects/{write_key}/settings",
        "/v1/experiments/definitions",
        "/sourceConfig/",
        "/sourceConfig",
    ):
        add_preflight(router, gate, path)
    return router


def _add_flags_route(router: APIRouter, api: BrowserApi, path: str, detailed: bool) -> None:
    async def flags(request: Request) -> Response:
        # /flags/ answers v2 (the detailed map) unless asked for v1; /decide/ answers v3,
        # and the detailed map too from v4 on.
        version = request.query_params.get("v")
        wants_detail = version in ("2", "4") or (detailed and version != "1")

        async def work(request: Request, call: Call) -> Response:
            return await api.posthog_flags(request, call, wants_detail)

        return await api.run(request, work)

    router.add_api_route(
        path,
        flags,
        methods=["POST"],
        tags=["posthog"],
        summary="PostHog's feature flags: each running experiment with the unit's variant",
    )
    router.add_api_route(path.rstrip("/"), flags, methods=["POST"], include_in_schema=False)
    for each in (path, path.rstrip("/")):
        add_preflight(router, api.gate, each)


def _add_config_route(router: APIRouter, api: BrowserApi, suffix: str, script: bool) -> None:
    async def config(
        request: Request, token: Annotated[str, Path(pattern=KEY_PATTERN)]
    ) -> Response:
        async def work(_: Request, call: Call) -> Response:
            return api.posthog_config(call, token, script)

        return await api.run(request, work)

    router.add_api_route(
        f"/array/{{token}}/{suffix}",
        config,
        methods=["GET"],
        tags=["posthog"],
        summary=f"posthog-js's remote config ({'as a script' if script else 'JSON'})",
    )
    add_preflight(router, api.gate, f"/array/{{token}}/{suffix}")


def _add_nothing_route(router: APIRouter, api: BrowserApi, path: str) -> None:
    async def nothing(request: Request) -> Response:
        async def work(request: Request, call: Call) -> Response:
            return api.posthog_nothing(request, call, path)

        return await api.run(request, work)

    router.add_api_route(path, nothing, methods=["GET"], include_in_schema=False)
    add_preflight(router, api.gate, path)

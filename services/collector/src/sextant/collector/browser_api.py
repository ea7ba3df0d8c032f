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

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Path, Request, Response
from fastapi.responses import StreamingResponse
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
from sextant.collector.features import FeatureHub, FeaturePayloads, posthog_feature_flags
from sextant.collector.gate import Call, Gate, Head
from sextant.collector.routes import add_preflight, error_response
from sextant.core.config_plane import ConfigState
from sextant.core.logging import get_logger
from sextant.core.secrets import MissingSecretKey, UnreadableSecret
from sextant.schemas.config import ApiKey, KeyKind

log = get_logger(__name__)
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
        payloads: FeaturePayloads,
        hub: FeatureHub,
        heartbeat_s: float = 15.0,
    ) -> None:
        self.payloads = payloads
        self.hub = hub
        self.heartbeat_s = heartbeat_s
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
            self.gate.open(call)
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
        head = Head.of(request)
        key = self.gate.header_key(head.get("authorization"), head.query)
        writer = self.gate.admit(call, key, "header Authorization / query writeKey")
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
        head = Head.of(request)
        key = self.gate.header_key(head.get("authorization"), head.query)
        writer = self.gate.admit(call, key, "header Authorization")
        body, etag = public_definitions(self.state, writer.project.id)
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if if_none_match == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    # --- GrowthBook's SDK endpoints (client keys) --------------------------------------------

    def features(self, call: Call, client_key: str, if_none_match: str | None) -> Response:
        writer = self.gate.admit(call, client_key, "path clientKey", KeyKind.CLIENT)
        body, etag = self._payload(writer.key)
        headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Sse-Support": "enabled"}
        if if_none_match == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    def _payload(self, key: ApiKey) -> tuple[bytes, str]:
        try:
            payload = self.payloads.for_key(key, self.clock())
        except (MissingSecretKey, UnreadableSecret) as error:
            log.error("a client key's payload cannot be encrypted", key=key.id, reason=str(error))
            raise ApiError(
                503,
                "payload_key_unreadable",
                "this collector cannot open the client key's payload key (SEXTANT_SECRET_KEY)",
                "path clientKey",
            ) from error
        return payload.body, payload.etag

    def stream(self, request: Request, call: Call, client_key: str) -> Response:
        """Server-Sent Events: ``features`` with the whole payload at once and whenever it
        changes, a comment as heartbeat; the key is checked again at every change, so a
        revoked key's stream ends."""
        writer = self.gate.admit(call, client_key, "path clientKey", KeyKind.CLIENT)
        key_hash = writer.key.key_hash
        api = self

        async def events() -> AsyncIterator[bytes]:
            sent: str | None = None
            api.hub.streams += 1
            try:
                while not await request.is_disconnected():
                    key = api.state.key_for_hash(key_hash)
                    if (
                        key is None
                        or not key.usable_at(datetime.now(UTC))
                        or key.key_kind is not KeyKind.CLIENT
                    ):
                        return
                    try:
                        body, etag = api._payload(key)
                    except ApiError:
                        return
                    if etag != sent:
                        sent = etag
                        yield b"event: features\ndata: " + body + b"\n\n"
                    else:
                        yield b": heartbeat\n\n"
                    await api.hub.wait(api.heartbeat_s)
            finally:
                api.hub.streams -= 1

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

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
        now = self.clock()
        variants = variants_for(self.state, writer.project.id, distinct_id, now)
        properties = document.get("person_properties")
        features = posthog_feature_flags(
            self.payloads,
            writer.project,
            distinct_id,
            properties if isinstance(properties, dict) else {},
            now,
        )
        answer = posthog_flags(variants, features, detailed=detailed)
        if not detailed or request.query_params.get("config") == "true":
            answer |= posthog_remote_config(str(token), bool(variants) or bool(features))
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
        has_flags = bool(self.state.experiments(writer.project.id)) or bool(
            self.state.features(writer.project.id)
        )
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

    @router.get(
        "/api/features/{client_key}",
        tags=["features"],
        summary="GrowthBook's SDK payload: the client key's environment's features",
        description="What GrowthBook's SDKs (`apiHost` = the collector, `clientKey`) and "
        "Sextant's read. Answers 304 to a matching `If-None-Match`; `X-Sse-Support: enabled` "
        "tells GrowthBook's SDKs they may stream from `/sub/{clientKey}`.",
    )
    async def features(
        request: Request,
        client_key: Annotated[str, Path(pattern=KEY_PATTERN)],
        if_none_match: Annotated[str | None, Header(alias="If-None-Match", max_length=200)] = None,
    ) -> Response:
        async def work(_: Request, call: Call) -> Response:
            return api.features(call, client_key, if_none_match)

        return await api.run(request, work)

    @router.get(
        "/sub/{client_key}",
        tags=["features"],
        summary="Server-Sent Events: the features payload now and at every change",
        response_class=StreamingResponse,
    )
    async def stream(
        request: Request, client_key: Annotated[str, Path(pattern=KEY_PATTERN)]
    ) -> Response:
        async def work(request: Request, call: Call) -> Response:
            return api.stream(request, call, client_key)

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
        "/api/features/{client_key}",
        "/sub/{client_key}",
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

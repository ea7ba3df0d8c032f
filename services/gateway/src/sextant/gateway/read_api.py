"""The read API: a project's metrics, insights, experiments and alerts, for its read key.

Every handler takes the project from the key (:data:`ReadScope`) and never from the request,
so a key can only ever reach its own project's data; a metric, experiment or rule of another
project is simply not found.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import anyio.to_thread
import orjson
from fastapi import APIRouter, Body, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from sextant.gateway import alerts, examples, experiments, insights
from sextant.gateway.auth import ReadScope
from sextant.gateway.context import Gateway, GatewayDep
from sextant.gateway.live import LivePoint, LiveStream, MetricPointFeed, parse_position
from sextant.gateway.pages import IdCursor, Limit, Page, page_by_id
from sextant.gateway.problems import (
    ProblemError,
    Responses,
    example_response,
    invalid,
    not_found,
    problem_responses,
)
from sextant.gateway.series import Interval, SeriesResult, metric_series
from sextant.gateway.sql import request_time
from sextant.schemas.config import IDENTIFIER, AlertRule, Experiment, MetricDefinition
from sextant.schemas.records import AlertState

router = APIRouter(prefix="/v1")
MetricKey = Annotated[str, Path(pattern=IDENTIFIER, examples=["revenue"])]
ExperimentKey = Annotated[str, Path(pattern=IDENTIFIER, examples=["new-checkout"])]
_ERRORS = problem_responses(401, 403, 404, 422, 503)
_QUERY_ERRORS = problem_responses(401, 403, 422, 503)


def _ok(example: Any) -> dict[int | str, dict[str, Any]]:
    return example_response(example)


def _metric(gateway: Gateway, project_id: str, key: str) -> MetricDefinition:
    metric = gateway.state.get(f"metric:{project_id}:{key}")
    if not isinstance(metric, MetricDefinition):
        raise not_found(f"metric '{key}'", "key")
    return metric


def _range(
    start: datetime | None, end: datetime | None, default: timedelta
) -> tuple[datetime, datetime]:
    end = request_time(end, "to") if end is not None else datetime.now(UTC)
    start = request_time(start, "from") if start is not None else end - default
    if start >= end:
        raise invalid("'from' must be before 'to'", "from")
    if end - start > timedelta(days=3660):
        raise invalid("the range may span at most ten years", "from")
    return start, end


# --- Metrics ---------------------------------------------------------------------------------


@router.get(
    "/metrics",
    tags=["metrics"],
    summary="The project's metric definitions",
    responses=_ok({"items": [examples.METRIC], "next_cursor": None}) | _QUERY_ERRORS,
)
def list_metrics(
    scope: ReadScope, gateway: GatewayDep, limit: Limit = 100, cursor: IdCursor = None
) -> Page[MetricDefinition]:
    return page_by_id(gateway.state.metrics(scope.project_id), lambda m: m.id, limit, cursor)


@router.get(
    "/metrics/{key}",
    tags=["metrics"],
    summary="One metric definition",
    responses=_ok(examples.METRIC) | _ERRORS,
)
def get_metric(scope: ReadScope, gateway: GatewayDep, key: MetricKey) -> MetricDefinition:
    return _metric(gateway, scope.project_id, key)


@router.get(
    "/metrics/{key}/series",
    tags=["metrics"],
    summary="A metric over time, from the processor's live windows",
    response_model=SeriesResult,
    responses=_ok(examples.SERIES) | _ERRORS,
)
def metric_series_route(
    scope: ReadScope,
    gateway: GatewayDep,
    key: MetricKey,
    from_: Annotated[
        datetime | None,
        Query(
            alias="from",
            description="Start (inclusive); default: 24 hours before `to`",
            examples=["2025-03-01T00:00:00Z"],
        ),
    ] = None,
    to: Annotated[
        datetime | None,
        Query(description="End (exclusive); default: now", examples=["2025-03-02T00:00:00Z"]),
    ] = None,
    interval: Annotated[
        Interval, Query(description="Bucket size", examples=["hour"])
    ] = Interval.MINUTE,
    breakdown: Annotated[
        bool,
        Query(description="One series per breakdown value instead of the total", examples=[False]),
    ] = False,
) -> Response:
    metric = _metric(gateway, scope.project_id, key)
    start, end = _range(from_, to, timedelta(days=1))
    result = metric_series(gateway, scope.project_id, metric, start, end, interval, breakdown)
    # Serialised directly: a day of minutes is 1,440 points, not worth validating again.
    return Response(result.model_dump_json(by_alias=True), media_type="application/json")


_SSE_EXAMPLE = (
    'event: ready\nid: 0:120,1:98,2:113\ndata: {"metric":"revenue"}\n\n'
    "event: point\nid: 0:121,1:98,2:113\n"
    'data: {"metric":"revenue","window_start":"2025-03-01T10:04:00+00:00","window_seconds":60,'
    '"breakdown":"EUR","version":3,"value":412.5,"count":9,"sum":412.5,"denominator":0,'
    '"quantiles":null,"emitted_at":"2025-03-01T10:04:41.120000+00:00"}\n\n'
)


STREAM_DATA_MODELS: tuple[type[BaseModel], ...] = (LivePoint,)
"""Models of event-stream data: FastAPI does not collect them, the app's OpenAPI adds them."""

# Laid out as FastAPI documents its own event streams: each event's `data` is JSON.
_SSE_RESPONSE: Responses = {
    200: {
        "description": "Server-Sent Events; the data of each `point` event is a LivePoint",
        "content": {
            "text/event-stream": {
                "schema": {"type": "string"},
                "itemSchema": {
                    "type": "object",
                    "properties": {
                        "event": {"type": "string"},
                        "id": {"type": "string"},
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": {"$ref": "#/components/schemas/LivePoint"},
                        },
                    },
                },
                "example": _SSE_EXAMPLE,
            }
        },
    }
}


@router.get(
    "/metrics/{key}/live",
    tags=["metrics"],
    summary="Live windows of a metric (Server-Sent Events)",
    description=(
        "Each new or corrected window as an `event: point`, within a second of the processor "
        "emitting it. Each event's `id` is the stream's position; reconnect with "
        "`Last-Event-ID` to receive everything since, nothing twice. `event: heartbeat` "
        "keeps quiet connections open and moves the id forward."
    ),
    response_class=StreamingResponse,
    responses=_SSE_RESPONSE | _ERRORS,
)
async def metric_live(
    scope: ReadScope,
    gateway: GatewayDep,
    request: Request,
    key: MetricKey,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=2000,
            description="The id of the last event received",
            examples=["0:121,1:98,2:113"],
        ),
    ] = None,
) -> StreamingResponse:
    metric = _metric(gateway, scope.project_id, key)
    since = parse_position(last_event_id) if last_event_id else None
    feed: MetricPointFeed = request.app.state.feed
    if not feed.ready() and not await anyio.to_thread.run_sync(feed.wait_ready, 5.0):
        raise ProblemError(503, "live-unavailable", "the live feed is not connected yet; retry")
    stream = LiveStream(
        feed, scope.project_id, key, metric, since, gateway.settings.live_heartbeat_seconds
    )
    return StreamingResponse(
        stream.events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# --- Insights --------------------------------------------------------------------------------


@router.post(
    "/insights/trends",
    tags=["insights"],
    summary="Count or unique users of an event over time, filtered and broken down",
    responses=_ok(examples.TRENDS_RESULT) | _QUERY_ERRORS,
)
def trends_route(
    scope: ReadScope,
    gateway: GatewayDep,
    query: Annotated[
        insights.TrendsQuery, Body(openapi_examples={"orders": {"value": examples.TRENDS_REQUEST}})
    ],
) -> insights.TrendsResult:
    return insights.trends(gateway, scope.project_id, query)


@router.post(
    "/insights/funnels",
    tags=["insights"],
    summary="Ordered steps within a conversion window: users, conversion and time per step",
    responses=_ok(examples.FUNNEL_RESULT) | _QUERY_ERRORS,
)
def funnels_route(
    scope: ReadScope,
    gateway: GatewayDep,
    query: Annotated[
        insights.FunnelQuery,
        Body(openapi_examples={"checkout": {"value": examples.FUNNEL_REQUEST}}),
    ],
) -> insights.FunnelResult:
    return insights.funnel(gateway, scope.project_id, query)


@router.post(
    "/insights/retention",
    tags=["insights"],
    summary="Cohorts by first occurrence of an event, returning with another, by day or week",
    responses=_ok(examples.RETENTION_RESULT) | _QUERY_ERRORS,
)
def retention_route(
    scope: ReadScope,
    gateway: GatewayDep,
    query: Annotated[
        insights.RetentionQuery,
        Body(openapi_examples={"signups": {"value": examples.RETENTION_REQUEST}}),
    ],
) -> insights.RetentionResult:
    return insights.retention(gateway, scope.project_id, query)


# --- Experiments -----------------------------------------------------------------------------


@router.get(
    "/experiments/definitions",
    tags=["experiments"],
    summary="Every experiment of the project (what the SDKs assign variants from)",
    description="A JSON list of experiment documents. Answers 304 to a matching `If-None-Match`.",
    responses=_ok([examples.EXPERIMENT]) | {304: {"description": "Not modified"}} | _QUERY_ERRORS,
)
def experiment_definitions(
    scope: ReadScope,
    gateway: GatewayDep,
    if_none_match: Annotated[
        str | None,
        Header(
            alias="If-None-Match",
            max_length=200,
            description="The `ETag` of the last answer",
            examples=['"9b2cf1e0a4d35c7e1f0b6a8d2e4c6f10"'],
        ),
    ] = None,
) -> Response:
    documents = sorted(gateway.state.experiments(scope.project_id), key=lambda e: e.id)
    body = orjson.dumps([d.model_dump(mode="json") for d in documents])
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    if if_none_match == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return Response(body, media_type="application/json", headers={"ETag": etag})


@router.get(
    "/experiments",
    tags=["experiments"],
    summary="The project's experiments, paged",
    responses=_ok({"items": [examples.EXPERIMENT], "next_cursor": None}) | _QUERY_ERRORS,
)
def list_experiments(
    scope: ReadScope, gateway: GatewayDep, limit: Limit = 100, cursor: IdCursor = None
) -> Page[Experiment]:
    return page_by_id(gateway.state.experiments(scope.project_id), lambda e: e.id, limit, cursor)


_RESULTS_EXAMPLE: dict[str, Any] = {
    "experiment": "new-checkout",
    "computed_at": "2025-03-08T12:00:00Z",
    "correction": "holm",
    "alpha": 0.05,
    "cuped_lookback_days": 14,
    "variants": [
        {"id": "control", "name": "", "weight": 0.5, "units": 5012},
        {"id": "one-page", "name": "", "weight": 0.5, "units": 4988},
    ],
    "multi_variant_units": 3,
    "srm": {"statistic": 0.0576, "p_value": 0.81, "checked": True, "flagged": False},
    "metrics": [
        {
            "metric": "checkout-conversion",
            "role": "primary",
            "metric_kind": "conversion",
            "analysed_as": "ratio",
            "method": {
                "test": "delta_method_t",
                "relative": "delta_method",
                "variance_reduction": "cuped_ratio",
                "lookback_days": 14,
                "sequential": "asymptotic_confidence_sequence",
                "sequential_rho": 0.0282,
                "correction": "holm",
                "bayesian": "gaussian_effect",
                "prior": {"kind": "flat", "mean": None, "stddev": None, "scale": "relative"},
                "higher_is_better": True,
                "documentation": "docs/experiment-statistics.md",
            },
            "quantile": None,
            "variants": [
                {
                    "variant": "control",
                    "units": 5012,
                    "mean": 0.301,
                    "variance": None,
                    "numerator": 612.0,
                    "denominator": 2033.0,
                    "pre_mean": 0.288,
                    "units_with_pre": 1406,
                    "quantile": None,
                },
                {
                    "variant": "one-page",
                    "units": 4988,
                    "mean": 0.342,
                    "variance": None,
                    "numerator": 688.0,
                    "denominator": 2012.0,
                    "pre_mean": 0.291,
                    "units_with_pre": 1391,
                    "quantile": None,
                },
            ],
            "comparisons": [
                {
                    "variant": "one-page",
                    "control": "control",
                    "absolute": {
                        "estimate": 0.041,
                        "se": 0.0148,
                        "ci": {"low": 0.012, "high": 0.070},
                        "p_value": 0.0055,
                    },
                    "relative": {
                        "estimate": 0.136,
                        "se": 0.051,
                        "ci": {"low": 0.036, "high": 0.236},
                        "p_value": 0.0077,
                    },
                    "always_valid": {"low": 0.002, "high": 0.080},
                    "always_valid_relative": {"low": 0.005, "high": 0.267},
                    "always_valid_p_value": 0.031,
                    "adjusted_p_value": 0.031,
                    "bayesian": {
                        "absolute": {
                            "expected": 0.041,
                            "credible_interval": {"low": 0.012, "high": 0.070},
                            "chance_to_win": 0.997,
                            "risk": {"treatment": 0.00002, "control": 0.041},
                        },
                        "relative": {
                            "expected": 0.136,
                            "credible_interval": {"low": 0.036, "high": 0.236},
                            "chance_to_win": 0.996,
                            "risk": {"treatment": 0.00008, "control": 0.136},
                        },
                    },
                    "cuped": {
                        "theta": 0.41,
                        "control_adjusted": 0.183,
                        "treatment_adjusted": 0.224,
                        "unadjusted_absolute": {
                            "estimate": 0.043,
                            "se": 0.0162,
                            "ci": {"low": 0.011, "high": 0.075},
                            "p_value": 0.008,
                        },
                        "unadjusted_relative": {
                            "estimate": 0.143,
                            "se": 0.056,
                            "ci": {"low": 0.033, "high": 0.253},
                            "p_value": 0.011,
                        },
                    },
                    "verdict": "win",
                }
            ],
            "error": None,
        }
    ],
}


@router.get(
    "/experiments/{key}/results",
    tags=["experiments"],
    summary="Results per variant and metric, from the streamed statistics or the warehouse",
    responses=_ok(_RESULTS_EXAMPLE) | _ERRORS,
)
def experiment_results_route(
    scope: ReadScope,
    gateway: GatewayDep,
    key: ExperimentKey,
    source: Annotated[
        Literal["warehouse"] | None,
        Query(
            description="warehouse: recompute from the events table even when streamed",
            examples=["warehouse"],
        ),
    ] = None,
) -> experiments.ExperimentResults:
    experiment = gateway.state.get(f"experiment:{scope.project_id}:{key}")
    if not isinstance(experiment, Experiment):
        raise not_found(f"experiment '{key}'", "key")
    metrics = {m.id: m for m in gateway.state.metrics(scope.project_id)}
    return experiments.experiment_results(gateway, scope.project_id, experiment, metrics, source)


# --- Alerts ----------------------------------------------------------------------------------


@router.get(
    "/alerts",
    tags=["alerts"],
    summary="Alert history: state transitions of the project's rules, newest first",
    responses=_ok({"items": [examples.ALERT_EVENT], "next_cursor": None}) | _QUERY_ERRORS,
)
def alert_history_route(
    scope: ReadScope,
    gateway: GatewayDep,
    limit: Limit = 100,
    cursor: Annotated[
        str | None,
        Query(
            max_length=400,
            description="`next_cursor` of the previous page",
            examples=["MjAyNS0wMy0wMVQxMDowNTowMCswMDowMHx0NA=="],
        ),
    ] = None,
    rule_id: Annotated[str | None, Query(pattern=IDENTIFIER, examples=["checkout-drop"])] = None,
    state: Annotated[
        AlertState | None,
        Query(description="Only transitions into this state", examples=["firing"]),
    ] = None,
    from_: Annotated[
        datetime | None, Query(alias="from", examples=["2025-03-01T00:00:00Z"])
    ] = None,
    to: Annotated[datetime | None, Query(examples=["2025-03-08T00:00:00Z"])] = None,
) -> alerts.AlertPage:
    start = request_time(from_, "from") if from_ is not None else None
    end = request_time(to, "to") if to is not None else None
    if start is not None and end is not None and start >= end:
        raise invalid("'from' must be before 'to'", "from")
    return alerts.alert_history(
        gateway,
        scope.project_id,
        limit,
        cursor,
        rule_id,
        state,
        start,
        end,
    )


@router.get(
    "/alerts/rules",
    tags=["alerts"],
    summary="The project's alert rules and the state each is in",
    responses=_ok(
        [{"rule": examples.ALERT_RULE, "state": "firing", "since": "2025-03-01T10:05:00Z"}]
    )
    | _QUERY_ERRORS,
)
def alert_rules_route(scope: ReadScope, gateway: GatewayDep) -> list[alerts.RuleState]:
    rules = gateway.state.of_kind(AlertRule, scope.project_id)
    return alerts.rule_states(gateway, scope.project_id, rules)

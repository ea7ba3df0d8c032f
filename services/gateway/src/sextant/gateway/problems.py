"""One error shape for every failure: RFC 9457 ``application/problem+json``.

Every error the gateway returns, whatever raised it (validation, authentication, an unknown
route, a query over its limits, a bug), is a JSON object with ``type``, ``title``, ``status``,
``detail`` and ``parameter`` (the request parameter at fault, or ``null``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from sextant.core.logging import get_logger

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
_TYPE_BASE = "https://sextant.dev/problems/"

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


class Problem(BaseModel):
    """The body of every error response."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "type": "https://sextant.dev/problems/invalid-parameter",
                "title": "Invalid request",
                "status": 422,
                "detail": "Input should be 'minute', 'hour' or 'day'",
                "parameter": "interval",
            }
        }
    )

    type: str = Field(description="A URI naming the kind of problem")
    title: str
    status: int
    detail: str
    parameter: str | None = Field(default=None, description="The request parameter at fault")


class ProblemError(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        parameter: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.parameter = parameter
        self.headers = headers


def problem_response(
    status: int,
    kind: str,
    detail: str,
    parameter: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem document as a response."""
    body = Problem(
        type=_TYPE_BASE + kind,
        title=_TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        parameter=parameter,
    )
    return JSONResponse(
        body.model_dump(), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def not_found(what: str, parameter: str | None = None) -> ProblemError:
    return ProblemError(404, "not-found", f"{what} does not exist", parameter)


def invalid(detail: str, parameter: str) -> ProblemError:
    return ProblemError(422, "invalid-parameter", detail, parameter)


def _parameter(location: tuple[Any, ...]) -> str | None:
    """``('query', 'from')`` → ``from``; ``('body', 'steps', 0, 'event')`` → ``steps.0.event``;
    a whole body as ``body``."""
    parts = [str(p) for p in location]
    if not parts:
        return None
    if parts[0] in ("query", "path", "header", "cookie") and len(parts) > 1:
        return ".".join(parts[1:])
    if parts[0] == "body":
        return ".".join(parts[1:]) or "body"
    return ".".join(parts)


async def _validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
    parameter = _parameter(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid request"))
    detail = f"{parameter}: {message}" if parameter else message
    return problem_response(422, "invalid-parameter", detail, parameter)


async def _http_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    kind = {404: "not-found", 405: "method-not-allowed"}.get(error.status_code, "http-error")
    detail = error.detail if isinstance(error.detail, str) else _TITLES.get(error.status_code, "")
    headers = dict(error.headers) if error.headers else None
    return problem_response(error.status_code, kind, detail, None, headers)


async def _problem(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ProblemError)
    return problem_response(error.status, error.kind, error.detail, error.parameter, error.headers)


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log.error("unhandled error", path=request.url.path, exc_info=error)
    return problem_response(500, "internal", "the gateway failed to answer; it has been logged")


def install_problem_handlers(app: FastAPI) -> None:
    """Route every kind of failure to the one problem shape."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ProblemError, _problem)
    app.add_exception_handler(Exception, _unexpected)


Responses = dict[int | str, dict[str, Any]]
"""The ``responses`` argument of a route."""


def example_response(example: Any, status: int = 200) -> Responses:
    """An OpenAPI response entry with a JSON example."""
    return {status: {"content": {"application/json": {"example": example}}}}


NO_CONTENT: Responses = {204: {"description": "Deleted"}}


def problem_responses(*statuses: int) -> Responses:
    """OpenAPI ``responses`` entries documenting the problem shape for ``statuses``."""
    return {
        status: {
            "model": Problem,
            "content": {
                PROBLEM_JSON: {
                    "example": {
                        "type": _TYPE_BASE + ("invalid-parameter" if status == 422 else "error"),
                        "title": _TITLES.get(status, "Error"),
                        "status": status,
                        "detail": "what went wrong, in words",
                        "parameter": "from" if status == 422 else None,
                    }
                }
            },
            "description": _TITLES.get(status, "Error"),
        }
        for status in statuses
    }

"""Error answers: every one says what was wrong (``message``) and where (``where``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """The body of every 4xx/5xx answer.

    ``code`` and ``message`` are what Segment's clients log; ``type``, ``detail`` and ``attr``
    are PostHog's error shape (its clients read those), repeating the same facts.
    """

    code: str = Field(examples=["payload_too_large"])
    message: str = Field(examples=["the request body is larger than 512000 bytes"])
    where: str = Field(examples=["body"])
    detail: str = ""
    type: str = Field(default="validation_error", examples=["validation_error"])
    attr: str | None = Field(default=None, examples=["body"])


def _error_type(status: int) -> str:
    """PostHog's error ``type`` for an HTTP status."""
    if status in (401, 403):
        return "authentication_error"
    if status == 429:
        return "throttled_error"
    if status >= 500:
        return "server_error"
    return "validation_error"


class ApiError(Exception):
    """An answer other than 200, raised anywhere while handling a request."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        where: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = ErrorBody(
            code=code,
            message=message,
            where=where,
            detail=message,
            type=_error_type(status),
            attr=where,
        )
        self.headers = headers or {}


def bad_request(message: str, where: str = "body") -> ApiError:
    return ApiError(400, "bad_request", message, where)


def too_large(message: str, where: str = "body") -> ApiError:
    return ApiError(413, "payload_too_large", message, where)

"""Pagination of lists that grow: ``limit`` and an opaque ``cursor`` to the next page."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field

from sextant.schemas.config import IDENTIFIER

T = TypeVar("T")
MAX_PAGE = 1000

Limit = Annotated[
    int,
    Query(ge=1, le=MAX_PAGE, description="Items per page", examples=[100]),
]
IdCursor = Annotated[
    str | None,
    Query(
        pattern=IDENTIFIER,
        description="`next_cursor` of the previous page; omit for the first page",
        examples=["signups"],
    ),
]


class Page(BaseModel, Generic[T]):
    """One page of a list; ``next_cursor`` is null on the last page."""

    items: list[T]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to get the next page"
    )


def page_by_id(
    items: Sequence[T], key: Callable[[T], str], limit: int, cursor: str | None
) -> Page[T]:
    """Items sorted by ``key`` (an id), those after ``cursor``, at most ``limit`` of them."""
    ordered = sorted(items, key=key)
    remaining = [item for item in ordered if cursor is None or key(item) > cursor]
    chunk = remaining[:limit]
    more = len(remaining) > limit
    return Page[T](items=chunk, next_cursor=key(chunk[-1]) if more and chunk else None)

"""The ``limit`` and ``cursor`` query parameters of every list route (:mod:`farm.db.paging`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from farm.db.paging import DEFAULT_LIMIT, MAX_CURSOR_LENGTH, MAX_LIMIT, PageRequest


def page_request(
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description=f"items per page, at most {MAX_LIMIT}")
    ] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_CURSOR_LENGTH,
            description="the previous page's next_cursor, unchanged; none for the first page",
        ),
    ] = None,
) -> PageRequest:
    return PageRequest(limit=limit, cursor=cursor)


Paging = Annotated[PageRequest, Depends(page_request)]
"""A list route's page: ``?limit=`` (default 100, at most 1000) and ``?cursor=``; a cursor this
list never handed out is a 422 naming ``cursor``."""

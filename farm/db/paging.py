"""Cursor pagination of lists: a page of rows in a stable order and an opaque cursor to the next.

A cursor is the sort key of the last row sent, as URL-safe base64 of a JSON array. Keyset
paging (``WHERE id > :last ORDER BY id LIMIT n``) walks every row exactly once even while rows
are added, and costs the same on page 1 and page 1,000, which an offset would not. Clients must
treat the cursor as opaque: its form may change.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from farm.errors import InvalidSpec

T = TypeVar("T")
Key = tuple[int | str, ...]

DEFAULT_LIMIT = 100
"""Rows per page when the caller does not say."""
MAX_LIMIT = 1000
"""The most rows one page may ask for."""
MAX_CURSOR_LENGTH = 400
"""Longer than any cursor the farm hands out (a key of a few ids and 64-character names)."""


@dataclass(frozen=True)
class PageRequest:
    """What page a caller asked for: at most ``limit`` rows after ``cursor`` (None: the first)."""

    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


@dataclass(frozen=True)
class Rows(Generic[T]):
    """One page of rows and the cursor of the next page (None: this is the last)."""

    items: list[T]
    next_cursor: str | None


def encode_cursor(key: Key) -> str:
    """The cursor that resumes after the row whose sort key is ``key``."""
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, types: tuple[type, ...]) -> Key:
    """The sort key in ``cursor``, checked against the key's ``types``.

    Raises:
        InvalidSpec: a cursor this list never handed out (field ``cursor``).
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise _bad_cursor() from exc
    if (
        not isinstance(key, list)
        or len(key) != len(types)
        # bool is an int to isinstance, and never a key
        or not all(type(k) is t for k, t in zip(key, types, strict=True))
    ):
        raise _bad_cursor()
    return tuple(key)


def _bad_cursor() -> InvalidSpec:
    return InvalidSpec(
        "cursor: not a cursor of this list; pass the next_cursor of the previous page unchanged, "
        "or leave cursor out for the first page",
        field="cursor",
    )


def keyset_page(
    session: Session,
    query: Select[T],
    column: InstrumentedAttribute[Any],
    page: PageRequest,
    *,
    descending: bool = False,
) -> Rows[T]:
    """A page of ``query`` ordered by ``column`` (ascending unless ``descending``): a unique
    integer column, an id, whose order every database agrees on.

    Raises:
        InvalidSpec: a bad cursor.
    """
    key_type = column.type.python_type
    if page.cursor is not None:
        (after,) = decode_cursor(page.cursor, (key_type,))
        query = query.where(column < after if descending else column > after)
    order = column.desc() if descending else column.asc()
    rows = list(session.scalars(query.order_by(order).limit(page.limit + 1)))
    return _cut(rows, page.limit, lambda row: (getattr(row, column.key),))


def list_page(
    rows: Sequence[T], page: PageRequest, key: Callable[[T], Key], types: tuple[type, ...]
) -> Rows[T]:
    """A page of ``rows`` (all of them, read into memory), in the order of ``key``: unique and
    of ``types``. Sorted here, in Python, because a database's collation may order names
    otherwise (PostgreSQL's en_US puts ``b`` before ``C``), and the cursor compares in Python.

    Only for tables an operator writes by hand and that stay small (pools, quotas, licences).

    Raises:
        InvalidSpec: a bad cursor.
    """
    rows = sorted(rows, key=key)
    start = 0
    if page.cursor is not None:
        after = decode_cursor(page.cursor, types)
        start = next((i for i, row in enumerate(rows) if key(row) > after), len(rows))
    return _cut(list(rows[start : start + page.limit + 1]), page.limit, key)


def _cut(rows: list[T], limit: int, key: Callable[[T], Key]) -> Rows[T]:
    """``rows`` holds up to ``limit + 1``: one more than the page says another page follows."""
    if len(rows) <= limit:
        return Rows(rows, None)
    return Rows(rows[:limit], encode_cursor(key(rows[limit - 1])))

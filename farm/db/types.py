"""Column types shared by the tables in :mod:`farm.db.models`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Dialect
from sqlalchemy.types import TypeDecorator

from farm.vocab import MAX_ID

MAX_INTEGER = MAX_ID
"""Largest value of an ``Integer`` column on PostgreSQL (32-bit), every table's id included.

SQLite takes bigger numbers, PostgreSQL refuses them: the API checks ids against this bound, the
same on both, so a bigger one is a 422 naming it rather than a database error.
"""


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that always reads back aware, in UTC, on SQLite as on PostgreSQL.

    SQLite has no time zones: ``DateTime(timezone=True)`` stores the text and hands back a naive
    datetime, so the API sent ``2026-12-05T07:00:00`` with no offset although its schema says
    date-time (issue 21), and code subtracting an aware ``now`` from it raised. Values are
    converted to UTC on the way in (a naive one is taken as UTC already) and stamped UTC on the
    way out. The DDL is unchanged, ``DateTime(timezone=True)``, so no migration is needed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # SQLite: stored in UTC, read back naive
        return value.astimezone(UTC)  # PostgreSQL: the session's time zone, made UTC

    @property
    def python_type(self) -> type[datetime]:
        return datetime

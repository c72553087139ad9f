"""The event stream's table: appending in commit order, and reading a studio's or a job's events.

Readers resume "after id N" (``Last-Event-ID``), so they are only correct if a studio's event
ids become visible in increasing order: once a reader has seen id N, no event of that studio
with a smaller id may commit later. Autoincrement ids do not promise that by themselves:

- **PostgreSQL** hands out ids from a sequence when a row is inserted, not when it commits.
  Transaction A takes id 10, B takes id 11 and commits first; a reader sees 11, moves its
  cursor to 11, and never sees 10 when A commits. So every transaction takes a per-studio
  advisory lock (:func:`lock_studios`, ``pg_advisory_xact_lock``) *before* it inserts that
  studio's events and holds it until it commits or rolls back. Ids of one studio are then
  drawn under the lock, and a transaction that drew a smaller id has committed before another
  can draw a bigger one. Several studios are locked in ascending order, so two writers never
  wait on each other in a circle. The dispatcher's batch inserts its events last, just before
  its commit, so it holds the lock for a few statements.
- **SQLite** lets one transaction write at a time: its write lock is taken at the first write
  and held until the commit, and ids are drawn under it. Ids commit in order already.

Every writer goes through the lock: Core inserts call :func:`append`, and ORM inserts
(``session.add(m.Event(...))``: the API, ``farm admin rush``, the dispatcher's gates) take it
in the ``before_insert`` hook of :class:`~farm.db.models.Event`, so no writer can forget it.

Readers then need nothing special: a plain ``id > after`` query in id order never skips an
event of the studio (a rolled-back insert leaves a gap that nobody ever sees).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Table, select, text
from sqlalchemy.orm import Session

from farm import schemas
from farm.db import models as m
from farm.states import TileState

EVENTS: Table = m.Event.__table__  # type: ignore[assignment]
LOCK_CLASS = 0x45564E54  # "EVNT": the first key of the studio's advisory lock (int4)
"""``pg_advisory_xact_lock(LOCK_CLASS, studio_id)`` serialises a studio's event inserts."""
READ_LIMIT = 500
"""Events read per query: a stream sends a backlog in pages of this size."""


def lock_studios(connection: Connection, studio_ids: Iterable[int]) -> None:
    """Take the event lock of each studio for the rest of the transaction (PostgreSQL only).

    Call it before inserting a studio's events; taking it again in the same transaction is
    free of effect. Ascending order keeps two writers of several studios from deadlocking.
    """
    if connection.dialect.name != "postgresql":
        return  # SQLite: the database's write lock already orders the ids (module docstring)
    for studio_id in sorted(set(studio_ids)):
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:k, :s)"), {"k": LOCK_CLASS, "s": studio_id}
        )


def append(connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert event rows (``studio_id``, ``job_id``, ``kind``, ``payload``, ``created_at``)
    in the caller's transaction, ids in the order of ``rows``, under each studio's lock."""
    if not rows:
        return
    lock_studios(connection, (row["studio_id"] for row in rows))
    connection.execute(EVENTS.insert(), list(rows))


def read(
    session: Session,
    studio_id: int,
    *,
    job_id: int | None = None,
    after: int = 0,
    limit: int = READ_LIMIT,
) -> list[schemas.EventOut]:
    """The studio's events (or one of its jobs') with an id above ``after``, oldest first.

    The caller checks that the job is the studio's; the studio filter stays anyway, so a job
    id never reaches another studio's events.
    """
    query = select(m.Event).where(m.Event.studio_id == studio_id, m.Event.id > after)
    if job_id is not None:
        query = query.where(m.Event.job_id == job_id)
    rows = session.scalars(query.order_by(m.Event.id).limit(limit))
    return [schemas.EventOut.model_validate(row) for row in rows]


def job_state(session: Session, studio_id: int, job_id: int) -> TileState | None:
    """The job's state now (None if it is not the studio's)."""
    state = session.scalar(
        select(m.Job.state).where(m.Job.id == job_id, m.Job.studio_id == studio_id)
    )
    return None if state is None else TileState(state)

"""Writing a batch: every row one tick changed, in bulk statements inside one transaction.

Tiles, frames and layers are updated by primary key with ``executemany`` (SQLAlchemy's bulk
UPDATE), usage records and events are inserted the same way: a batch costs a handful of
statements whatever its size, and no ORM object is loaded to change a column.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from farm.db import models as m
from farm.states import TERMINAL
from scheduler.dispatch.book import Changes


def write(
    session: Session, changes: Changes, now: datetime, usage: list[dict[str, Any]] | None = None
) -> None:
    """Write ``changes`` (and the attempts' ``usage`` rows) in the caller's transaction."""
    for model, rows in (
        (m.Tile, changes.tiles),
        (m.Frame, changes.frames),
        (m.Layer, changes.layers),
    ):
        for group in _same_keys(rows.values()):
            session.execute(update(model), group)
    for job in changes.jobs.values():
        values: dict[str, Any] = {"state": job.state.value}
        if job.state in TERMINAL:
            values["finished_at"] = now
        session.execute(update(m.Job).where(m.Job.id == job.id).values(**values))
    events = [
        {"studio_id": studio, "job_id": job_id, "kind": kind, "payload": payload, "created_at": now}
        for job_id, studio, kind, payload in _events(changes)
    ]
    if events:
        session.execute(insert(m.Event), events)
    if usage:
        session.execute(insert(m.UsageRecord), usage)


def _same_keys(rows: Any) -> list[list[dict[str, Any]]]:
    """Rows grouped by their set of columns: one ``executemany`` per shape."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(row)), []).append(row)
    return list(groups.values())


def _events(changes: Changes) -> list[tuple[int, int, str, dict[str, Any]]]:
    """One ``tiles`` event per job per batch, and one ``job_state`` event per job that moved."""
    out: list[tuple[int, int, str, dict[str, Any]]] = []
    for job_id, tiles in changes.events.items():
        out.append((job_id, changes.studio_of[job_id], "tiles", {"tiles": tiles}))
    for job in changes.jobs.values():
        out.append((job.id, job.studio_id, "job_state", {"state": job.state.value}))
    return out

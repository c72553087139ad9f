"""Frame rows, written in bulk: the first ones when a job is submitted, the rest as the
dispatcher reaches them.

A job may have 100,000 frames in each of its layers. Writing them all at submit held the
database's write lock for tens of seconds (300,000 ORM rows), so a submit writes the first
:data:`FRAMES_AT_SUBMIT` of each layer in one statement and records how many exist
(``layers.frames_created``); the dispatcher writes the next ones a window at a time. A frame
that has no row yet is *waiting*: it counts as such in every rollup and report.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Table, insert

from farm.db import models as m
from farm.states import TileState

FRAMES: Table = m.Frame.__table__  # type: ignore[assignment]
FRAMES_AT_SUBMIT = 1000
"""Frames per layer written when a job is submitted (every frame of most jobs)."""


def insert_frames(
    connection: Connection,
    *,
    job_id: int,
    layer_id: int,
    numbers: Sequence[int],
    state: TileState = TileState.WAITING,
) -> list[int]:
    """Write one layer's frames ``numbers`` in one statement; returns their ids in order."""
    if not numbers:
        return []
    rows = [
        {"layer_id": layer_id, "job_id": job_id, "number": n, "state": state.value} for n in numbers
    ]
    statement = insert(FRAMES).returning(FRAMES.c.id, sort_by_parameter_order=True)
    return list(connection.execute(statement, rows).scalars().all())


def uncreated(frames_created: int | None, first: int, last: int) -> int:
    """How many of a layer's frames have no row yet."""
    return 0 if frames_created is None else (last - first + 1) - frames_created

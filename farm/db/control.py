"""Job control on the API side: check a pause, resume, cancel or retry against the job's state
machine rule (:func:`farm.states.job_control`) and queue it for the dispatcher.

The dispatcher is the only writer of tile states, so the API never moves a tile itself: it
stores a :class:`~farm.db.models.JobCommand`, and the dispatcher applies it on its next tick
(within about 0.1 s) in the same transaction as its other changes, stamping ``applied_at`` and
``result``. A command that makes no sense now (cancel a finished job, resume a running one,
retry with nothing failed) is a 409 that says why, and nothing is queued.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from farm import schemas
from farm.db import models as m
from farm.db.queries import get_job_row
from farm.db.session import Database
from farm.errors import Conflict, InvalidSpec, NotFound
from farm.states import IllegalTransition, JobAction, TileState, job_control

RETRYABLE = (TileState.FAILED.value, TileState.CANCELLED.value)


def request(
    session: Session,
    user: m.User,
    job_id: int,
    action: JobAction,
    args: dict[str, Any] | None = None,
) -> m.JobCommand:
    """Queue ``action`` on one of the user's studio's jobs (another studio's job is a 404)."""
    job = get_job_row(session, user.studio_id, job_id)
    args = args or {}
    queued = _queued(session, job.id)
    paused = _paused_after(job.paused, queued)
    retryable = _retryable(session, job, args) if action is JobAction.RETRY else 0
    if action is JobAction.CANCEL and any(c.action == JobAction.CANCEL for c in queued):
        raise Conflict(f"job {job.id} is already being cancelled")
    try:
        change = job_control(
            action, state=TileState(job.state), paused=paused, by=user.name, retryable=retryable
        )
    except IllegalTransition as exc:
        raise Conflict(f"cannot {action.value} job {job.id}: {exc}") from exc
    command = m.JobCommand(
        job_id=job.id,
        studio_id=job.studio_id,
        action=action.value,
        args=args,
        requested_by=user.name,
        reason=change.reason,
    )
    session.add(command)
    session.flush()
    return command


def get(session: Session, studio_id: int, job_id: int, command_id: int) -> m.JobCommand:
    command = session.get(m.JobCommand, command_id)
    if command is None or command.job_id != job_id or command.studio_id != studio_id:
        raise NotFound(f"command {command_id} of job {job_id} not found")
    return command


def wait_applied(
    db: Database, studio_id: int, job_id: int, command_id: int, timeout_s: float
) -> schemas.JobCommandOut:
    """The command, once the dispatcher applied it or ``timeout_s`` passed (then still queued).

    Each look is its own short transaction, so the dispatcher's commit is seen at once and no
    read lock is held in between.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        with db.session() as session:
            command = out(get(session, studio_id, job_id, command_id))
        if command.applied_at is not None or time.monotonic() >= deadline:
            return command
        time.sleep(0.05)


def out(command: m.JobCommand) -> schemas.JobCommandOut:
    return schemas.JobCommandOut.model_validate(command)


def _queued(session: Session, job_id: int) -> list[m.JobCommand]:
    return list(
        session.scalars(
            select(m.JobCommand)
            .where(m.JobCommand.job_id == job_id, m.JobCommand.applied_at.is_(None))
            .order_by(m.JobCommand.id)
        )
    )


def _paused_after(paused: bool, queued: list[m.JobCommand]) -> bool:
    """Whether the job will be paused once the commands already queued are applied."""
    for command in queued:
        if command.action == JobAction.PAUSE:
            paused = True
        elif command.action == JobAction.RESUME:
            paused = False
    return paused


def _retryable(session: Session, job: m.Job, args: dict[str, Any]) -> int:
    """Failed or cancelled tiles, plus cancelled frames never cut into tiles, in the selection."""
    layer_ids = _layer_ids(session, job, args.get("layers"))
    frames = args.get("frames")
    span = job.spec.get("frames") if isinstance(job.spec, dict) else None
    if frames is not None and isinstance(span, dict) and {"first", "last"} <= span.keys():
        outside = sorted(n for n in frames if not span["first"] <= n <= span["last"])
        if outside:
            raise InvalidSpec(
                f"frames: job {job.id} has no frame {', '.join(map(str, outside))}; its frames are "
                f"{span['first']}-{span['last']}",
                field="frames",
            )
    tiles = (
        select(func.count())
        .select_from(m.Tile)
        .where(m.Tile.job_id == job.id, m.Tile.state.in_(RETRYABLE))
    )
    empty = (
        select(func.count())
        .select_from(m.Frame)
        .where(
            m.Frame.job_id == job.id,
            m.Frame.state.in_(RETRYABLE),
            m.Frame.tile_plan.is_(None),
        )
    )
    if layer_ids is not None:
        tiles = tiles.where(m.Tile.layer_id.in_(layer_ids))
        empty = empty.where(m.Frame.layer_id.in_(layer_ids))
    if frames is not None:
        numbers = select(m.Frame.id).where(m.Frame.job_id == job.id, m.Frame.number.in_(frames))
        tiles = tiles.where(m.Tile.frame_id.in_(numbers))
        empty = empty.where(m.Frame.number.in_(frames))
    return int(session.scalar(tiles) or 0) + int(session.scalar(empty) or 0)


def _layer_ids(session: Session, job: m.Job, names: list[str] | None) -> list[int] | None:
    if names is None:
        return None
    every = {
        name: layer_id
        for name, layer_id in session.execute(
            select(m.Layer.name, m.Layer.id).where(m.Layer.job_id == job.id)
        )
    }
    rows = {name: every[name] for name in names if name in every}
    unknown = sorted(set(names) - set(rows))
    if unknown:
        raise InvalidSpec(
            f"layers: job {job.id} has no layer named {', '.join(map(repr, unknown))}; "
            f"its layers are {', '.join(sorted(every))}",
            field="layers",
        )
    return list(rows.values())

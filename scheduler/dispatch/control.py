"""Job control in the dispatcher: the users' pause, resume, cancel and retry, applied to the book.

The API checks each command against the job-level rule (``farm.states.job_control``) and queues
it (``farm.db.control``); the dispatcher reads the queue with its new jobs (every 0.1 s) and
applies it inside its tick's one transaction, so a command and the tile moves it causes land
together. Every tile move goes through a tile rule (``on_cancelled``, ``on_retried``); a frame
that was never cut into tiles takes the state its tiles would have had.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from farm.db import models as m
from farm.states import (
    TERMINAL,
    JobAction,
    TileState,
    frame_cancelled,
    frame_retried,
    on_cancelled,
    on_retried,
    rollup,
)
from scheduler.dispatch.activate import Activator
from scheduler.dispatch.book import (
    Changes,
    FrameBook,
    JobBook,
    TileBook,
    cancel_uncreated,
    change_frame,
    move,
    set_frame_state,
)

RETRYABLE = (TileState.FAILED, TileState.CANCELLED)


@dataclass(frozen=True, slots=True)
class Command:
    """One queued job command, as read from ``job_commands``."""

    id: int
    job_id: int
    action: JobAction
    args: dict[str, Any]
    by: str
    reason: str


def read_commands(session: Session) -> list[Command]:
    """The commands not applied yet, oldest first (an indexed read of a short list)."""
    rows = session.execute(
        select(
            m.JobCommand.id,
            m.JobCommand.job_id,
            m.JobCommand.action,
            m.JobCommand.args,
            m.JobCommand.requested_by,
            m.JobCommand.reason,
        )
        .where(m.JobCommand.applied_at.is_(None))
        .order_by(m.JobCommand.id)
    )
    return [
        Command(row.id, row.job_id, JobAction(row.action), dict(row.args or {}), *row[4:])
        for row in rows
    ]


def apply(
    command: Command,
    job: JobBook,
    changes: Changes,
    *,
    stop: Callable[[TileBook], None],
    activator: Activator,
) -> str:
    """Apply one command to ``job`` in the book; returns what it did, in one line."""
    if command.action is JobAction.PAUSE:
        job.paused = True
        return "paused: nothing new is dispatched"
    if command.action is JobAction.RESUME:
        job.paused = False
        return "resumed"
    if command.action is JobAction.CANCEL:
        return cancel(job, changes, by=command.by, stop=stop)
    if command.action is JobAction.RETRY:
        return retry(job, changes, by=command.by, args=command.args, activator=activator)
    return f"nothing to do for {command.action}"


def cancel(job: JobBook, changes: Changes, *, by: str, stop: Callable[[TileBook], None]) -> str:
    """Cancel every unfinished tile and frame of ``job``; ``stop`` each running tile's task."""
    tiles = running = frames = 0
    for layer in job.layers.values():
        for frame in layer.frames.values():
            for tile in frame.tiles:
                if tile.state in TERMINAL:
                    continue
                if tile.state == TileState.RUNNING:
                    stop(tile)
                    running += 1
                elif tile.state == TileState.PENDING:
                    layer.ready.remove(tile.key)
                move(tile, on_cancelled(tile.state, by=by), changes)
                tiles += 1
            if frame.state not in TERMINAL:  # a frame never cut into tiles
                change_frame(frame, frame_cancelled(frame.state, by=by), changes)
                frames += 1
        frames += cancel_uncreated(layer, changes)
    return f"cancelled {tiles} tile(s) ({running} running, stopped) and {frames} unplanned frame(s)"


def retry(
    job: JobBook,
    changes: Changes,
    *,
    by: str,
    args: dict[str, Any],
    activator: Activator,
) -> str:
    """Failed and cancelled tiles of the selected layers and frames run again, each with a
    fresh budget of attempts; a tile whose upstream is not done (it is retried too) waits."""
    names = args.get("layers")
    numbers = set(args["frames"]) if args.get("frames") is not None else None
    layers = sorted(job.layers.values(), key=lambda layer: layer.position)
    tiles = frames = 0
    for layer in layers:
        if names is not None and layer.name not in names:
            continue
        for frame in layer.frames.values():
            if numbers is not None and frame.number not in numbers:
                continue
            moved = _retry_frame(job, frame, changes, by=by)
            if moved < 0:
                frames += 1
            tiles += max(moved, 0)
            if frame.state == TileState.WAITING:
                activator.offer(frame)
    return f"retried {tiles} tile(s) and {frames} unplanned frame(s)"


def _retry_frame(job: JobBook, frame: FrameBook, changes: Changes, *, by: str) -> int:
    """Retry one frame's failed and cancelled tiles: their count, or -1 for an unplanned frame."""
    layer = frame.layer
    if not frame.tiles:
        if frame.state in RETRYABLE:
            change_frame(frame, frame_retried(frame.state, by=by), changes)
            return -1
        return 0
    upstream_done = all(
        job.layers[dep].frames[frame.number].state == TileState.DONE for dep in layer.depends_on
    )
    moved = 0
    for tile in frame.tiles:
        if tile.state not in RETRYABLE:
            continue
        change = on_retried(tile.state, by=by, ready=upstream_done)  # a fresh budget
        move(tile, change, changes)
        if change.after == TileState.PENDING:
            layer.ready.add([tile.key])
        moved += 1
    if moved:  # a cancelled frame ignores its tiles' moves (rollup rule): set it from them
        set_frame_state(frame, rollup(frame.counts), changes)
    return moved

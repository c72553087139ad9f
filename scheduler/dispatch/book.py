"""The dispatcher's book: what it keeps in memory of the active jobs, so a tick never reloads them.

The database stays the source of truth: the book is loaded from it in a few bulk queries when
a job becomes active (or the dispatcher starts), then kept in step by the dispatcher, the only
writer of tile states. Each change updates counters all the way up (tile -> frame -> layer ->
job), so a rollup costs what changed, not the size of the job.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from farm import schemas
from farm.db import models as m
from farm.states import (
    TERMINAL,
    FrameChange,
    IllegalTransition,
    TileState,
    Transition,
    rollup,
)
from farm.vocab import LayerKind, PixelRect, Requirements
from scheduler.dispatch.ready import ReadyTiles
from scheduler.plan import TileKey


@dataclass(slots=True)
class TileBook:
    """One tile of an active job: what building its task and applying its result need."""

    id: int
    frame: FrameBook
    index: int
    rank: int
    rect: tuple[int, int, int, int]
    render_rect: tuple[int, int, int, int]
    state: TileState
    attempts: int
    output_hash: str | None = None
    preemptions: int = 0
    forgiven: int = 0
    """Attempts that do not count against the budget (node lost, bad input, a user's retry)."""
    node_losses: int = 0
    """Its attempts lost with their node (or render session) since this dispatcher loaded it:
    forgiven up to ``results.NODE_LOSSES_FORGIVEN``, counted after that."""
    avoid: tuple[str, ...] = ()
    """Ray node ids this tile failed on: its next attempts go to other nodes of the pool."""
    memory_gb: float | None = None
    """Memory its next attempt asks for, GiB, after an attempt ran out (None: the layer's)."""
    done_at: float = 0.0
    """When (monotonic) its last attempt succeeded in this process: an input found damaged by
    an attempt that started before then was already made again."""

    @property
    def counted(self) -> int:
        """Attempts that count against ``max_attempts``."""
        return self.attempts - self.forgiven

    @property
    def key(self) -> TileKey:
        return (self.frame.number, self.frame.layer.position, self.rank, self.id)

    # The rectangles were checked when the frame was planned: build them without validating
    # again (a task is built per attempt, thousands a tick at farm scale).
    @property
    def pixels(self) -> PixelRect:
        x0, y0, x1, y1 = self.rect
        return PixelRect.model_construct(x0=x0, y0=y0, x1=x1, y1=y1)

    @property
    def render_pixels(self) -> PixelRect:
        x0, y0, x1, y1 = self.render_rect
        return PixelRect.model_construct(x0=x0, y0=y0, x1=x1, y1=y1)


@dataclass(slots=True)
class FrameBook:
    """One frame of one layer; its state is the rollup of its tiles' counts."""

    id: int
    layer: LayerBook
    number: int
    state: TileState
    planned: bool
    cost_preview: list[Any] | None = None
    tiles: list[TileBook] = field(default_factory=list)
    counts: Counter[TileState] = field(default_factory=Counter)

    @property
    def output_hash(self) -> str | None:
        """A frame of a layer that is not tiled has one tile: its output is the frame's."""
        return self.tiles[0].output_hash if len(self.tiles) == 1 else None


@dataclass(slots=True)
class LayerBook:
    """One layer of an active job, with its ready tiles and where they may run."""

    id: int
    job: JobBook
    name: str
    position: int
    kind: LayerKind
    pool: str | None
    depends_on: tuple[str, ...]
    spec: schemas.LayerSpec
    requirements: Requirements
    tile_times: list[Any]
    frames: dict[int, FrameBook] = field(default_factory=dict)
    counts: Counter[TileState] = field(default_factory=Counter)
    state: TileState = TileState.WAITING
    ready: ReadyTiles = field(default_factory=ReadyTiles)
    pools: tuple[str, ...] = ()
    """Pools that fit, most preferred first (``scheduler.plan.fit.fitting_pools``)."""
    unfit: str = ""
    downstream: list[LayerBook] = field(default_factory=list)
    reason: str = ""
    """Why its ready tiles wait, as last written to the database."""
    next_frame: int = 0
    """The first frame number without a row yet (``last_frame + 1``: every frame has one)."""
    last_frame: int = 0
    node_failures: Counter[str] = field(default_factory=Counter)
    """Failed attempts per Ray node id: a node that fails several is kept off the layer."""
    in_flight: int = 0
    """Its attempts sent to Ray (or about to be) and not yet collected."""
    batch_lost: bool = False
    """A batch of its tiles lost its worker: its tiles go one task each from then on."""
    tile_s: float = 0.0
    """Moving mean of its successful attempts' wall time (0 until one ends): short tiles go to
    Ray in batches (``scheduler.dispatch.batches``)."""

    @property
    def first_frame(self) -> FrameBook:
        return self.frames[min(self.frames)]

    @property
    def uncreated(self) -> int:
        """Frames without a row yet: they wait (``dispatch.frames`` writes them in windows)."""
        return self.last_frame - self.next_frame + 1


@dataclass(slots=True)
class JobBook:
    """One active job: its spec, its layers by name and its rolled-up state."""

    id: int
    studio_id: int
    show_id: int
    name: str
    spec: schemas.JobSpec
    state: TileState
    priority: int = 50
    rush: bool = False
    paused: bool = False
    gated: bool = False
    """It waits for other jobs or asset versions (``scheduler.dispatch.gates``): no frame starts."""
    layers: dict[str, LayerBook] = field(default_factory=dict)
    counts: Counter[TileState] = field(default_factory=Counter)
    message: str = ""


@dataclass
class Changes:
    """What one batch changed, to be written in one transaction (``scheduler.dispatch.commit``)."""

    tiles: dict[int, dict[str, Any]] = field(default_factory=dict)
    frames: dict[int, dict[str, Any]] = field(default_factory=dict)
    layers: dict[int, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[int, JobBook] = field(default_factory=dict)
    finished_frames: list[FrameBook] = field(default_factory=list)
    """Frames that reached an end (done, failed, cancelled): their downstream may move."""
    events: dict[int, list[list[Any]]] = field(default_factory=dict)
    """Per job: ``[tile id, state, pool or node]`` of every tile that changed, in order."""
    new_tiles: list[TileBook] = field(default_factory=list)
    """Tiles planned in this batch (the dispatcher indexes them by id)."""
    voided: list[tuple[int, int]] = field(default_factory=list)
    """``(tile id, attempt)`` of successes whose output proved lost: failed after all."""
    offers: list[FrameBook] = field(default_factory=list)
    """Frames whose waiting tiles may run once their inputs exist again (the activator's)."""
    studio_of: dict[int, int] = field(default_factory=dict)
    """Job id -> studio id, for the events."""
    job_events: list[tuple[int, int, str, dict[str, Any]]] = field(default_factory=list)
    """``(job id, studio id, kind, payload)`` of job-level events (a pause, a cancel ...)."""
    frame_events: dict[int, list[list[Any]]] = field(default_factory=dict)
    """Per job: ``[frame id, layer, number, state]`` of every frame state change, in order."""
    layer_events: dict[int, list[list[Any]]] = field(default_factory=dict)
    """Per job: ``[layer id, layer, state]`` of every layer state change, in order."""
    job_states: list[tuple[int, int, str]] = field(default_factory=list)
    """``(job id, studio id, state)`` of every job state change, in order."""

    def tile(self, tile: TileBook, **values: Any) -> None:
        self.tiles.setdefault(tile.id, {"id": tile.id}).update(values)

    def frame(self, frame: FrameBook, **values: Any) -> None:
        self.frames.setdefault(frame.id, {"id": frame.id}).update(values)

    def layer(self, layer: LayerBook, **values: Any) -> None:
        self.layers.setdefault(layer.id, {"id": layer.id}).update(values)

    def event(self, tile: TileBook, where: str | None) -> None:
        job = tile.frame.layer.job
        self.studio_of[job.id] = job.studio_id
        self.events.setdefault(job.id, []).append([tile.id, tile.state.value, where])

    def frame_event(self, frame: FrameBook) -> None:
        layer = frame.layer
        job = layer.job
        self.studio_of[job.id] = job.studio_id
        entry = [frame.id, layer.name, frame.number, frame.state.value]
        self.frame_events.setdefault(job.id, []).append(entry)

    def layer_event(self, layer: LayerBook) -> None:
        job = layer.job
        self.studio_of[job.id] = job.studio_id
        entry = [layer.id, layer.name, layer.state.value]
        self.layer_events.setdefault(job.id, []).append(entry)

    def __bool__(self) -> bool:
        return bool(
            self.tiles
            or self.frames
            or self.layers
            or self.jobs
            or self.events
            or self.job_events
            or self.frame_events
            or self.layer_events
        )


def move(
    tile: TileBook,
    change: Transition,
    changes: Changes,
    *,
    where: str | None = None,
    **values: Any,
) -> None:
    """Apply a state-machine transition to a tile: book, attempts, rollups, row values, event.

    Attempt counts change here only, as the rule says (``Transition.attempt``).
    """
    attempts, forgiven = change.attempts_after(tile.attempts, tile.forgiven)
    if attempts != tile.attempts:
        tile.attempts = values["attempts"] = attempts
    if forgiven != tile.forgiven:
        tile.forgiven = values["forgiven"] = forgiven
    changes.tile(tile, state=change.after.value, reason=change.reason, **values)
    set_tile_state(tile, change.after, changes)
    changes.event(tile, where)


def set_tile_state(tile: TileBook, state: TileState, changes: Changes) -> None:
    """Move a tile to ``state`` in the book and roll the change up to its frame, layer, job."""
    before = tile.state
    if before == state:
        return
    tile.state = state
    frame = tile.frame
    counts = frame.counts
    counts[before] -= 1
    counts[state] += 1
    if frame.state == TileState.CANCELLED:
        return
    if frame.state == TileState.RUNNING and counts[TileState.RUNNING] > 0:
        return  # a frame with a tile running stays running (the rollup's rule): skip it
    set_frame_state(frame, rollup(counts), changes)


def change_frame(frame: FrameBook, change: FrameChange, changes: Changes) -> None:
    """A frame's own state change by a named rule of :mod:`farm.states` (not a rollup)."""
    if change.before != frame.state:
        raise IllegalTransition(
            f"frame {frame.number} of {frame.layer.name} is {frame.state}, not {change.before}"
        )
    set_frame_state(frame, change.after, changes)


def set_frame_state(frame: FrameBook, state: TileState, changes: Changes) -> None:
    """A frame's new state (its tiles' rollup, or a rule's), rolled up to its layer and job."""
    before = frame.state
    if before == state:
        return
    frame.state = state
    changes.frame(frame, state=state.value)
    changes.frame_event(frame)
    if state in TERMINAL:
        changes.finished_frames.append(frame)
    layer = frame.layer
    layer.counts[before] -= 1
    layer.counts[state] += 1
    _roll_layer(layer, changes)


def cancel_uncreated(layer: LayerBook, changes: Changes) -> int:
    """A cancelled job's frames without rows: counted cancelled, and never written."""
    count = layer.uncreated
    if count > 0:
        layer.counts[TileState.WAITING] -= count
        layer.counts[TileState.CANCELLED] += count
        layer.next_frame = layer.last_frame + 1
        _roll_layer(layer, changes)
    return max(count, 0)


def _roll_layer(layer: LayerBook, changes: Changes) -> None:
    layer_state = rollup(layer.counts)
    if layer_state != layer.state:
        job = layer.job
        job.counts[layer.state] -= 1
        job.counts[layer_state] += 1
        layer.state = layer_state
        changes.layer_event(layer)
        job_state = rollup(job.counts)
        if job_state != job.state:
            job.state = job_state
            changes.jobs[job.id] = job
            changes.job_states.append((job.id, job.studio_id, job_state.value))


def load_jobs(session: Session, job_ids: list[int]) -> list[JobBook]:
    """Read active jobs into the book: four bulk queries, light columns, no ORM objects."""
    if not job_ids:
        return []
    jobs: dict[int, JobBook] = {}
    for row in session.execute(
        select(
            m.Job.id,
            m.Job.studio_id,
            m.Job.show_id,
            m.Job.name,
            m.Job.spec,
            m.Job.state,
            m.Job.priority,
            m.Job.rush,
            m.Job.paused,
            m.Job.message,
            m.Job.dependencies_met,
        ).where(m.Job.id.in_(job_ids))
    ):
        jobs[row.id] = JobBook(
            id=row.id,
            studio_id=row.studio_id,
            show_id=row.show_id,
            name=row.name,
            spec=schemas.JobSpec.model_validate(row.spec),
            state=TileState(row.state),
            priority=row.priority,
            rush=bool(row.rush),
            paused=bool(row.paused),
            message=row.message,
        )
        spec = jobs[row.id].spec
        jobs[row.id].gated = bool(spec.after_jobs or spec.after_assets) and (
            row.dependencies_met is None
        )
    layers: dict[int, LayerBook] = {}
    for row in session.execute(
        select(
            m.Layer.id,
            m.Layer.job_id,
            m.Layer.name,
            m.Layer.position,
            m.Layer.kind,
            m.Layer.pool,
            m.Layer.depends_on,
            m.Layer.requirements,
            m.Layer.tile_times,
            m.Layer.frames_created,
        )
        .where(m.Layer.job_id.in_(jobs))
        .order_by(m.Layer.job_id, m.Layer.position)
    ):
        job = jobs[row.job_id]
        layer = LayerBook(
            id=row.id,
            job=job,
            name=row.name,
            position=row.position,
            kind=LayerKind(row.kind),
            pool=row.pool,
            depends_on=tuple(row.depends_on),
            spec=job.spec.layer(row.name),
            requirements=Requirements.model_validate(row.requirements or {}),
            tile_times=list(row.tile_times or []),
        )
        numbers = job.spec.layer_frames(layer.spec)
        first, layer.last_frame = numbers.first, numbers.last
        created = row.frames_created
        layer.next_frame = layer.last_frame + 1 if created is None else first + created
        job.layers[layer.name] = layer
        layers[layer.id] = layer
    for job in jobs.values():
        for layer in job.layers.values():
            for dep in layer.depends_on:
                job.layers[dep].downstream.append(layer)
    frames: dict[int, FrameBook] = {}
    for row in session.execute(
        select(
            m.Frame.id,
            m.Frame.layer_id,
            m.Frame.number,
            m.Frame.state,
            m.Frame.tile_plan.is_not(None).label("planned"),
            m.Frame.cost_preview,
        ).where(m.Frame.job_id.in_(jobs))
    ):
        layer = layers[row.layer_id]
        frame = FrameBook(
            id=row.id,
            layer=layer,
            number=row.number,
            state=TileState(row.state),
            planned=bool(row.planned),
            cost_preview=row.cost_preview,
        )
        layer.frames[frame.number] = frame
        frames[frame.id] = frame
    for row in session.execute(
        select(
            m.Tile.id,
            m.Tile.frame_id,
            m.Tile.index.label("position"),
            m.Tile.rank,
            m.Tile.x0,
            m.Tile.y0,
            m.Tile.x1,
            m.Tile.y1,
            m.Tile.render_rect,
            m.Tile.state,
            m.Tile.attempts,
            m.Tile.output_hash,
            m.Tile.preemptions,
            m.Tile.forgiven,
            m.Tile.avoid_nodes,
            m.Tile.memory_gb,
        )
        .where(m.Tile.job_id.in_(jobs))
        .order_by(m.Tile.frame_id, m.Tile.index)
    ):
        frame = frames[row.frame_id]
        tile = TileBook(
            id=row.id,
            frame=frame,
            index=row.position,
            rank=row.rank,
            rect=(row.x0, row.y0, row.x1, row.y1),
            render_rect=(*row.render_rect,),
            state=TileState(row.state),
            attempts=row.attempts,
            output_hash=row.output_hash,
            preemptions=row.preemptions,
            forgiven=row.forgiven,
            avoid=tuple(row.avoid_nodes or ()),
            memory_gb=row.memory_gb,
        )
        frame.tiles.append(tile)
        frame.counts[tile.state] += 1
    for job in jobs.values():
        _count(job)
    return list(jobs.values())


def _count(job: JobBook) -> None:
    """Counters and layer/job states from the frames just loaded."""
    job.counts.clear()
    for layer in job.layers.values():
        layer.counts = Counter(frame.state for frame in layer.frames.values())
        layer.counts[TileState.WAITING] += layer.uncreated
        layer.state = rollup(layer.counts)
        job.counts[layer.state] += 1
        for frame in layer.frames.values():
            for tile in frame.tiles:
                if tile.state == TileState.PENDING:
                    layer.ready.add([tile.key])

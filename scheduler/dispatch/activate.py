"""Frames becoming ready: plan their tiles, or cancel them when an upstream frame failed.

A frame of a layer is ready when the same frame of every layer it depends on is DONE. The
dispatcher hears of each frame that finishes and offers its downstream frames here, so nothing
scans whole jobs. A layer keeps at most :data:`READY_WINDOW` tiles planned ahead: a job of
100,000 frames gets its tiles as the farm reaches them, not all at once.
"""

from __future__ import annotations

import heapq

from sqlalchemy.orm import Session

from farm.db.frames import insert_frames
from farm.states import (
    TERMINAL,
    TileState,
    frame_planned,
    frame_upstream_failed,
    on_dependencies_met,
    on_upstream_failed,
)
from scheduler.dispatch.book import (
    Changes,
    FrameBook,
    JobBook,
    LayerBook,
    TileBook,
    change_frame,
    move,
)
from scheduler.dispatch.commit import TILES
from scheduler.dispatch.frames import frame_plan

FRAME_WINDOW = 256
"""Frames of a layer written ahead (rows that exist and have not ended); more come as they end."""
FRAMES_PER_TICK = 4096
"""Frame rows written per tick at most, so a huge job's first ticks stay short."""
READY_WINDOW = 4096
"""Ready tiles a layer keeps planned ahead of the pools; more frames wait to be planned."""
PLAN_PER_TICK = 20_000
"""New tiles planned per tick at most, so a fresh farm's first tick stays short (its frames
are planned over the next ticks) and the API keeps answering."""


class Activator:
    """Frames offered for activation, per layer in frame order."""

    def __init__(self) -> None:
        self._offered: dict[int, tuple[LayerBook, list[int], set[int]]] = {}

    def offer(self, frame: FrameBook) -> None:
        """Look at ``frame`` on the next activation (its upstream may be done now)."""
        layer = frame.layer
        entry = self._offered.get(layer.id)
        if entry is None:
            entry = self._offered[layer.id] = (layer, [], set())
        if frame.number not in entry[2]:
            entry[2].add(frame.number)
            heapq.heappush(entry[1], frame.number)

    def offer_job(self, job: JobBook) -> None:
        """A job just loaded: any waiting frame may be ready (upstream ended before a restart)."""
        for layer in job.layers.values():
            for frame in layer.frames.values():
                if frame.state == TileState.WAITING:
                    self.offer(frame)

    def offer_downstream(self, frame: FrameBook) -> None:
        """``frame`` just ended: what waited for it may move. The same frame of each layer
        that waits frame by frame; every frame of a layer that waits for the whole layer,
        once this one has ended all its frames; the next frame of its own layer when that
        one waits for its previous frame."""
        layer = frame.layer
        for down in layer.downstream:
            if down.spec.wait_for == "layer":
                if _layer_ended(layer):
                    for other in down.frames.values():
                        if other.state == TileState.WAITING:
                            self.offer(other)
                continue
            same = down.frames.get(frame.number)
            if same is not None:
                self.offer(same)
        if layer.spec.after_previous_frame:
            after = layer.frames.get(frame.number + 1)
            if after is not None:
                self.offer(after)
        if _adaptive(layer) and frame.number == layer.first_frame.number:
            for other in layer.frames.values():  # later frames waited for these measurements
                if other.state == TileState.WAITING:
                    self.offer(other)

    def forget(self, job: JobBook) -> None:
        for layer in job.layers.values():
            self._offered.pop(layer.id, None)

    def __bool__(self) -> bool:
        """Is some offered frame's layer short of ready tiles (so activating may plan it)?"""
        return any(len(layer.ready) < READY_WINDOW for layer, _, _ in self._offered.values())

    def activate(self, session: Session, changes: Changes) -> int:
        """Plan or cancel the offered frames that can move; returns how many changed."""
        moved = 0
        budget = len(changes.new_tiles) + PLAN_PER_TICK
        for layer_id in sorted(self._offered, key=lambda i: (self._offered[i][0].job.id, i)):
            layer, heap, numbers = self._offered[layer_id]
            while heap:
                if len(layer.ready) >= READY_WINDOW or len(changes.new_tiles) >= budget:
                    break
                number = heapq.heappop(heap)
                numbers.discard(number)
                moved += _activate_frame(session, layer.frames[number], changes)
            if not heap:
                del self._offered[layer_id]
        return moved


def create_frames(session: Session, layers: list[LayerBook], changes: Changes) -> list[FrameBook]:
    """Write the next frames of layers whose written, unfinished frames run low.

    A frame without a row already counts as waiting, so writing it changes no rollup; it is
    offered for activation like any waiting frame.
    """
    made: list[FrameBook] = []
    budget = FRAMES_PER_TICK
    for layer in layers:
        if budget <= 0:
            break
        open_frames = sum(layer.counts[s] for s in TileState if s not in TERMINAL) - layer.uncreated
        count = min(layer.uncreated, FRAME_WINDOW - open_frames, budget)
        if count <= 0:
            continue
        numbers = range(layer.next_frame, layer.next_frame + count)
        ids = insert_frames(
            session.connection(), job_id=layer.job.id, layer_id=layer.id, numbers=numbers
        )
        for frame_id, number in zip(ids, numbers, strict=True):
            frame = FrameBook(
                id=frame_id, layer=layer, number=number, state=TileState.WAITING, planned=False
            )
            layer.frames[number] = frame
            made.append(frame)
        layer.next_frame += count
        budget -= count
        first = layer.job.spec.layer_frames(layer.spec).first
        changes.layer(
            layer, frames_created=None if layer.uncreated == 0 else layer.next_frame - first
        )
    return made


def _activate_frame(session: Session, frame: FrameBook, changes: Changes) -> int:
    # A frame waits as a whole, or some of its tiles wait for an input made again.
    if frame.state != TileState.WAITING and not frame.counts[TileState.WAITING]:
        return 0
    layer = frame.layer
    if layer.job.gated:  # it waits for other jobs or asset versions (``dispatch.gates``)
        return 0
    upstream = _upstream_frames(frame)
    if upstream is None:  # a layer waited for as a whole still has frames to write
        return 0
    failed = next(
        (up for up in upstream if up.state in (TileState.FAILED, TileState.CANCELLED)), None
    )
    if failed is not None:
        where = f"{failed.layer.name} frame"
        if failed.layer is layer:
            where = f"its previous frame ({failed.number})"
        for tile in frame.tiles:
            if tile.state == TileState.WAITING:
                move(tile, on_upstream_failed(tile.state, upstream=where), changes)
        if frame.state not in TERMINAL:  # its tiles' rollup may have cancelled it already
            change_frame(frame, frame_upstream_failed(frame.state, upstream=where), changes)
        return 1
    if any(up.state != TileState.DONE for up in upstream):
        return 0
    if _waits_for_measurements(frame):
        return 0
    if not frame.planned:
        _plan_tiles(session, frame, upstream, changes)
    else:
        for tile in frame.tiles:
            if tile.state == TileState.WAITING:
                move(tile, on_dependencies_met(tile.state), changes)
    layer.ready.add(tile.key for tile in frame.tiles if tile.state == TileState.PENDING)
    return 1


def _plan_tiles(
    session: Session, frame: FrameBook, upstream: list[FrameBook], changes: Changes
) -> None:
    """Cut the frame into tiles and insert them PENDING, in one statement."""
    layer = frame.layer
    preview = next((up.cost_preview for up in upstream if up.cost_preview), None)
    plan = frame_plan(layer.job.spec, layer.spec, layer.tile_times, preview)
    ranks = plan.ranks
    rows = [
        {
            "frame_id": frame.id,
            "layer_id": layer.id,
            "job_id": layer.job.id,
            "index": tile.index,
            "rank": ranks[tile.index],
            "estimate_s": plan.estimates.get(tile.index),
            "x0": tile.rect.x0,
            "y0": tile.rect.y0,
            "x1": tile.rect.x1,
            "y1": tile.rect.y1,
            "render_rect": list(tile.render_rect.as_tuple()),
            "state": TileState.PENDING.value,
            "attempts": 0,
            "reason": "dependencies met",
        }
        for tile in plan.tiles
    ]
    statement = TILES.insert().returning(TILES.c.id, sort_by_parameter_order=True)
    ids = session.connection().execute(statement, rows).scalars().all()
    for tile_id, planned in zip(ids, plan.tiles, strict=True):
        frame.tiles.append(
            TileBook(
                id=tile_id,
                frame=frame,
                index=planned.index,
                rank=ranks[planned.index],
                rect=planned.rect.as_tuple(),
                render_rect=planned.render_rect.as_tuple(),
                state=TileState.PENDING,
                attempts=0,
            )
        )
    changes.new_tiles.extend(frame.tiles)
    frame.counts[TileState.PENDING] += len(frame.tiles)
    frame.planned = True
    changes.frame(frame, tile_plan={**plan.tiles.to_json(), "describe": plan.tiles.describe()})
    change_frame(frame, frame_planned(frame.state), changes)


def _upstream_frames(frame: FrameBook) -> list[FrameBook] | None:
    """The frames ``frame`` waits for; None while one of them has no row yet.

    Frame by frame: frame f of each layer in ``depends_on``. A layer waited for as a whole:
    every frame of it. With ``after_previous_frame``: also this layer's frame f-1.
    """
    layer = frame.layer
    upstream: list[FrameBook] = []
    for dep in layer.depends_on:
        other = layer.job.layers[dep]
        if layer.spec.wait_for == "layer":
            if other.uncreated:
                return None
            upstream.extend(other.frames.values())
        else:
            upstream.append(other.frames[frame.number])
    if layer.spec.after_previous_frame and frame.number > layer.first_frame.number:
        previous = layer.frames.get(frame.number - 1)
        if previous is None:
            return None
        upstream.append(previous)
    return upstream


def _layer_ended(layer: LayerBook) -> bool:
    """Has every frame of ``layer`` ended (each written and done, failed or cancelled)?"""
    return not layer.uncreated and all(f.state in TERMINAL for f in layer.frames.values())


def _adaptive(layer: LayerBook) -> bool:
    tiling = layer.spec.tiles
    return tiling is not None and tiling.target_runtime_s is not None


def _waits_for_measurements(frame: FrameBook) -> bool:
    """Adaptive tiles: a later frame is planned only once the layer's first frame has ended.

    Without this every frame would be planned from the base grid the moment the sim is done,
    before a single tile time is measured, and the target runtime would change nothing.
    Balanced tiles do not wait: each frame's cut comes from its own sim's cost preview. Any
    end counts: a first frame that failed must not hold the rest forever.
    """
    layer = frame.layer
    if not _adaptive(layer):
        return False
    first = layer.first_frame
    return frame.number != first.number and first.state not in TERMINAL

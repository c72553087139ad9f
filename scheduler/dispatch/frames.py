"""Frame activation and tile planning: the part of dispatch that needs the DB but not Ray.

A frame of a layer becomes ready when the same frame of every layer it depends on is DONE.
Only then are its tiles planned, so adaptive tiles can use the times measured on earlier frames.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from farm import schemas
from farm.db import models as m
from farm.errors import InvalidSpec
from farm.states import TERMINAL, TileState, on_dependencies_met, on_upstream_failed, rollup
from farm.vocab import LayerKind, PixelRect
from scheduler.tiles import (
    CostMap,
    PlannedTile,
    TilePlan,
    TileTimes,
    balanced_plan,
    dispatch_ranks,
    plan_tiles,
    replan,
)

log = logging.getLogger(__name__)
ACTIVE = [s.value for s in TileState if s not in TERMINAL]


@dataclass(frozen=True)
class FramePlan:
    """One frame's tiles and what is known of each tile's cost.

    ``estimates`` are seconds, from the layer's measured tiles; ``weights`` are relative costs
    from the frame's sim's cost preview, which order the dispatch while nothing is measured.
    """

    tiles: TilePlan
    estimates: dict[int, float] = field(default_factory=dict)
    weights: dict[int, float] = field(default_factory=dict)

    @property
    def ranks(self) -> list[int]:
        """The dispatch position of each tile: dearest first (see ``dispatch_ranks``)."""
        return dispatch_ranks(self.tiles, self.estimates or self.weights)


def frame_plan(
    spec: schemas.JobSpec,
    layer: schemas.LayerSpec,
    tile_times: list[Any],
    preview: list[Any] | None = None,
) -> FramePlan:
    """The tile plan of one frame of ``layer``, from its tiling and what is known of the cost.

    Layers that are not tiled get one tile covering the frame. A grid or size plan is re-split
    from the layer's measured times (``[x0, y0, x1, y1, seconds]`` of its finished tiles) when
    it sets a target runtime. A balanced plan is cut at equal cost, where the cost is this
    frame's own ``preview`` from its sim (relative cost per screen cell) when there is one: it
    follows the particles as they move, where times measured on earlier frames say where they
    were, and one noisy measurement cannot pull the cut. Without a preview the measured times
    cut it, and without either it is cut in equal areas. Measured times give the tiles their
    estimates in seconds; the order of dispatch follows them, else the preview, else
    centre-out.
    """
    width, height = spec.resolution.width, spec.resolution.height
    tiling = layer.tiles
    if tiling is None:
        return FramePlan(plan_tiles(width, height, cols=1, rows=1, overscan=0))
    times = TileTimes()
    for x0, y0, x1, y1, seconds in tile_times:
        times.record(PixelRect(x0=x0, y0=y0, x1=x1, y1=y1), float(seconds))
    measured = times.density(width, height)
    prior = _preview_map(width, height, preview)
    if tiling.balanced is not None:
        plan = balanced_plan(
            width, height, tiling.balanced, cost=prior or measured, overscan=tiling.overscan
        )
    else:
        plan = plan_tiles(
            width,
            height,
            cols=tiling.cols,
            rows=tiling.rows,
            tile_width=tiling.tile_width,
            tile_height=tiling.tile_height,
            overscan=tiling.overscan,
        )
        if tiling.target_runtime_s is not None and measured is not None:
            plan = replan(plan, measured.per_tile(plan), target_s=tiling.target_runtime_s)
    estimates = {} if measured is None else measured.per_tile(plan)
    return FramePlan(plan, estimates, {} if prior is None else prior.per_tile(plan))


def _preview_map(width: int, height: int, preview: list[Any] | None) -> CostMap | None:
    """The sim's cost preview as a cost map; None when there is none or it is unusable.

    A preview only steers the cut and the order, so a malformed one is logged and ignored
    rather than failing the frame.
    """
    if not preview:
        return None
    try:
        cost = CostMap.from_grid(width, height, np.asarray(preview, np.float64))
    except (InvalidSpec, ValueError, TypeError) as exc:
        log.warning("ignoring the sim's cost preview: %s", exc)
        return None
    return cost if cost.sum(PixelRect(x0=0, y0=0, x1=width, y1=height))[0] > 0 else None


def tile_rows(frame: m.Frame, layer: m.Layer, plan: FramePlan, state: TileState) -> list[m.Tile]:
    ranks = plan.ranks
    return [
        m.Tile(
            frame_id=frame.id,
            layer_id=layer.id,
            job_id=layer.job_id,
            index=tile.index,
            rank=ranks[tile.index],
            estimate_s=plan.estimates.get(tile.index),
            x0=tile.rect.x0,
            y0=tile.rect.y0,
            x1=tile.rect.x1,
            y1=tile.rect.y1,
            render_rect=list(tile.render_rect.as_tuple()),
            state=state.value,
            attempts=0,
            reason="",
        )
        for tile in plan.tiles
    ]


def planned_tile(tile: m.Tile) -> PlannedTile:
    return PlannedTile(index=tile.index, rect=tile.rect, render_rect=tile.render_pixels)


def active_jobs(session: Session) -> list[m.Job]:
    return list(
        session.scalars(
            select(m.Job)
            .where(m.Job.state.in_(ACTIVE))
            .order_by(m.Job.id)
            .options(
                selectinload(m.Job.layers).selectinload(m.Layer.frames).selectinload(m.Frame.tiles)
            )
        )
    )


def activate_frames(session: Session, job: m.Job, spec: schemas.JobSpec) -> list[dict[str, Any]]:
    """Plan tiles for frames whose upstream frames are done; cancel those whose upstream failed.

    Returns the events to record (one per frame that changed).
    """
    events: list[dict[str, Any]] = []
    frames = {(layer.name, frame.number): frame for layer in job.layers for frame in layer.frames}
    for layer in job.layers:
        layer_spec = spec.layer(layer.name)
        for frame in layer.frames:
            if frame.state != TileState.WAITING:
                continue
            upstream = [frames[(dep, frame.number)] for dep in layer.depends_on]
            failed = [
                (dep, up)
                for dep, up in zip(layer.depends_on, upstream, strict=True)
                if up.state in (TileState.FAILED, TileState.CANCELLED)
            ]
            if failed:
                dep = failed[0][0]
                for tile in frame.tiles:
                    if tile.state == TileState.WAITING:
                        change = on_upstream_failed(TileState.WAITING, upstream=f"{dep} frame")
                        tile.state, tile.reason = change.after.value, change.reason
                frame.state = TileState.CANCELLED.value
                events.append(
                    {
                        "frame": frame.number,
                        "layer": layer.name,
                        "state": "cancelled",
                        "reason": f"upstream layer {dep} frame {frame.number} failed",
                    }
                )
                continue
            if any(up.state != TileState.DONE for up in upstream):
                continue
            if _waits_for_measurements(layer, layer_spec, frame):
                continue
            if frame.tile_plan is None:
                preview = next((up.cost_preview for up in upstream if up.cost_preview), None)
                plan = frame_plan(spec, layer_spec, layer.tile_times, preview)
                frame.tile_plan = {**plan.tiles.to_json(), "describe": plan.tiles.describe()}
                session.add_all(tile_rows(frame, layer, plan, TileState.PENDING))
            else:
                for tile in frame.tiles:
                    if tile.state == TileState.WAITING:
                        change = on_dependencies_met(TileState.WAITING)
                        tile.state, tile.reason = change.after.value, change.reason
            frame.state = TileState.PENDING.value
            events.append({"frame": frame.number, "layer": layer.name, "state": "pending"})
    return events


def _waits_for_measurements(layer: m.Layer, spec: schemas.LayerSpec, frame: m.Frame) -> bool:
    """Adaptive tiles: a later frame is planned only once the layer's first frame has finished.

    Without this every frame would be planned from the base grid the moment the sim is done,
    before a single tile time is measured, and the target runtime would change nothing.
    Balanced tiles do not wait: each frame's cut comes from its own sim's cost preview.
    """
    tiling = spec.tiles
    if tiling is None or tiling.target_runtime_s is None:
        return False
    first = layer.frames[0]
    # Any end counts: a first frame that failed or was cancelled must not hold the rest forever.
    return frame.number != first.number and TileState(first.state) not in TERMINAL


def roll_up_job(job: m.Job, now: datetime) -> TileState:
    """Recompute frame states from tiles, then the job's state from its layers."""
    layer_states: Counter[TileState] = Counter()
    for layer in job.layers:
        frame_states: Counter[TileState] = Counter()
        for frame in layer.frames:
            if frame.tiles and frame.state != TileState.CANCELLED:
                frame.state = rollup(Counter(TileState(t.state) for t in frame.tiles)).value
            frame_states[TileState(frame.state)] += 1
        layer_states[rollup(frame_states)] += 1
    state = rollup(layer_states)
    if state != job.state:
        job.state = state.value
        if state in TERMINAL:
            job.finished_at = now
    return state


def output_path(
    root: Path,
    *,
    studio: str,
    show: str,
    sequence: str,
    shot: str,
    job: m.Job,
    layer: str,
    frame: int,
) -> Path:
    """Where an assembled frame goes: ``<root>/<studio>/<show>/<seq>/<shot>/<job>/<layer>/``."""
    folder = root / studio / show / sequence / shot / f"job{job.id}_{job.name}" / layer
    return folder / f"{shot}_{layer}.{frame:04d}.exr"


def is_tiled(kind: LayerKind) -> bool:
    return kind is LayerKind.PARTICLE_RENDER

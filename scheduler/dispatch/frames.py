"""A frame's tile plan, and where its assembled EXR goes: pure functions of spec and history.

A frame's tiles are planned only when it becomes ready (``scheduler.dispatch.activate``), so
adaptive tiles can use the times measured on earlier frames.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from farm import schemas
from farm.errors import InvalidSpec
from farm.vocab import PixelRect
from scheduler.tiles import (
    CostMap,
    TilePlan,
    TileTimes,
    balanced_plan,
    dispatch_ranks,
    plan_tiles,
    replan,
)

log = logging.getLogger(__name__)


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
    width, height = (spec.resolution.width, spec.resolution.height) if spec.resolution else (1, 1)
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


def output_path(
    root: Path,
    *,
    studio: str,
    show: str,
    sequence: str,
    shot: str,
    job_id: int,
    job_name: str,
    layer: str,
    frame: int,
) -> Path:
    """Where an assembled frame goes: ``<root>/<studio>/<show>/<seq>/<shot>/<job>/<layer>/``."""
    folder = root / studio / show / sequence / shot / f"job{job_id}_{job_name}" / layer
    return folder / f"{shot}_{layer}.{frame:04d}.exr"

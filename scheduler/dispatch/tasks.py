"""Building a tile's task: everything one attempt needs, as plain data for Ray.

A :class:`TileTask` names its inputs by blob hash (the seed, the frame cache, the render tiles),
where an assemble writes, and the provenance its EXR header records. Executors then need no DB.
What is the same for every tile of a layer (its spec, the camera, the input asset's hash, the
names of studio, show and shot) is resolved once per layer and kept, so a tile's task costs a
few attribute reads, not queries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from farm.db import models as m
from farm.frame_check import expected_channels
from farm.vocab import LayerKind
from scheduler.dispatch import frames as fr
from scheduler.dispatch.book import FrameBook, JobBook, LayerBook, TileBook
from scheduler.executors.base import InputTile, TileTask

RENDERER = "delta-particles/1"
"""Written into every assembled frame's header (``delta/renderer``)."""


@dataclass(frozen=True)
class _LayerContext:
    """What every tile task of one layer shares."""

    layer_spec: dict[str, Any]
    camera: dict[str, Any]
    asset_hash: str | None
    names: dict[str, str]
    """studio, show, sequence, shot: for output paths and provenance."""
    openjd: dict[str, Any] | None = None
    """The job's OpenJD template and values, dumped once (command layers)."""


class TaskBuilder:
    """Builds tile tasks from the book, resolving each layer's shared parts once."""

    def __init__(self, output_root: Path) -> None:
        self.output_root = output_root
        self._layers: dict[int, _LayerContext] = {}

    def forget(self, job: JobBook) -> None:
        for layer in job.layers.values():
            self._layers.pop(layer.id, None)

    def build(self, session: Session, tile: TileBook, *, memory_gb: float = 0.0) -> TileTask:
        """Everything one attempt of ``tile`` needs (its attempt number already counted), with
        the memory granted to it."""
        frame = tile.frame
        layer = frame.layer
        job = layer.job
        context = self._context(session, layer)
        extra: dict[str, Any] = {}
        if layer.kind is LayerKind.PARTICLE_SIM:
            extra["inputs"] = {"seed": context.asset_hash or ""}
        elif layer.kind is LayerKind.PARTICLE_RENDER:
            if context.asset_hash:
                extra["inputs"] = {"cache": context.asset_hash}
            else:
                sim = _upstream(layer, LayerKind.PARTICLE_SIM).frames[frame.number]
                extra["inputs"] = {"cache": sim.output_hash or ""}
                extra["producers"] = {"cache": sim.tiles[0].id}
        elif layer.kind is LayerKind.ASSEMBLE:
            extra = self._assemble_inputs(session, layer, frame, context)
        elif layer.kind is LayerKind.COMMAND and job.spec.openjd is not None:
            extra["openjd"] = context.openjd
        return TileTask(
            tile_id=tile.id,
            attempt=tile.attempts,
            job_id=job.id,
            layer=layer.name,
            kind=layer.kind,
            frame=frame.number,
            index=tile.index,
            width=job.spec.resolution.width if job.spec.resolution else 1,
            height=job.spec.resolution.height if job.spec.resolution else 1,
            rect=tile.pixels,
            render_rect=tile.render_pixels,
            layer_spec=context.layer_spec,
            camera=context.camera,
            memory_gb=memory_gb,
            **extra,
        )

    def _context(self, session: Session, layer: LayerBook) -> _LayerContext:
        context = self._layers.get(layer.id)
        if context is None:
            job = layer.job
            version = layer.spec.input_asset_version
            asset_hash = session.get_one(m.AssetVersion, version).content_hash if version else None
            row = session.execute(
                select(m.Studio.name, m.Show.name, m.Sequence.name, m.Shot.name)
                .select_from(m.Job)
                .join(m.Studio, m.Studio.id == m.Job.studio_id)
                .join(m.Show, m.Show.id == m.Job.show_id)
                .join(m.Shot, m.Shot.id == m.Job.shot_id)
                .join(m.Sequence, m.Sequence.id == m.Shot.sequence_id)
                .where(m.Job.id == job.id)
            ).one()
            context = self._layers[layer.id] = _LayerContext(
                layer_spec=layer.spec.model_dump(mode="json"),
                camera=job.spec.camera.model_dump(mode="json") if job.spec.camera else {},
                asset_hash=asset_hash,
                names=dict(zip(("studio", "show", "sequence", "shot"), row, strict=True)),
                openjd=job.spec.openjd.model_dump(mode="json") if job.spec.openjd else None,
            )
        return context

    def _assemble_inputs(
        self, session: Session, layer: LayerBook, frame: FrameBook, context: _LayerContext
    ) -> dict[str, Any]:
        """The frame's render tiles, where the EXR goes, and the provenance for its header."""
        job = layer.job
        render = _upstream(layer, LayerKind.PARTICLE_RENDER)
        render_frame = render.frames[frame.number]
        input_tiles = tuple(
            InputTile(
                tile_id=t.id,
                rect=t.pixels,
                render_rect=t.render_pixels,
                content_hash=t.output_hash or "",
            )
            for t in sorted(render_frame.tiles, key=lambda t: t.index)
        )
        names = context.names
        out_path = fr.output_path(
            self.output_root,
            studio=names["studio"],
            show=names["show"],
            sequence=names["sequence"],
            shot=names["shot"],
            job_id=job.id,
            job_name=job.name,
            layer=layer.name,
            frame=frame.number,
        )
        tile_plan = session.scalar(select(m.Frame.tile_plan).where(m.Frame.id == render_frame.id))
        submitted_by = session.scalar(select(m.Job.submitted_by).where(m.Job.id == job.id))
        return {
            "input_tiles": input_tiles,
            "channels": tuple(expected_channels(job.spec, layer.spec)),
            "output_path": str(out_path),
            "attributes": {
                "delta/studio": names["studio"],
                "delta/show": names["show"],
                "delta/shot": f"{names['sequence']}/{names['shot']}",
                "delta/job": f"{job.id}:{job.name}",
                "delta/layer": render.name,
                "delta/frame": frame.number,
                "delta/renderer": RENDERER,
                "delta/tile_plan": _plan_json(tile_plan),
                "delta/submitted_by": submitted_by or "",
            },
        }


def _upstream(layer: LayerBook, kind: LayerKind) -> LayerBook:
    """The layer of ``kind`` that ``layer`` depends on (the spec checks there is one)."""
    job = layer.job
    return next(job.layers[d] for d in layer.depends_on if job.layers[d].kind is kind)


def _plan_json(plan: dict[str, Any] | None) -> str:
    return json.dumps(plan or {}, separators=(",", ":"), sort_keys=True)

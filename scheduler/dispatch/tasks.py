"""Building a tile's task: everything one attempt needs, resolved from the DB into plain data.

A :class:`TileTask` names its inputs by blob hash (the seed, the frame cache, the render tiles),
where an assemble writes, and the provenance its EXR header records. Executors then need no DB.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from farm import schemas
from farm.db import models as m
from farm.frame_check import expected_channels
from farm.vocab import LayerKind
from scheduler.dispatch import frames as fr
from scheduler.executors.base import InputTile, TileTask

RENDERER = "delta-particles/1"
"""Written into every assembled frame's header (``delta/renderer``)."""


def build_task(
    session: Session, tile: m.Tile, spec: schemas.JobSpec, *, output_root: Path
) -> TileTask:
    """Everything one attempt needs, resolved from the DB into plain data for Ray."""
    layer = session.get_one(m.Layer, tile.layer_id)
    job = session.get_one(m.Job, tile.job_id)
    frame = session.get_one(m.Frame, tile.frame_id)
    layer_spec = spec.layer(layer.name)
    kind = LayerKind(layer.kind)
    extra: dict[str, Any] = {}
    if kind is LayerKind.PARTICLE_SIM:
        extra["inputs"] = {"seed": _asset_hash(session, layer_spec)}
    elif kind is LayerKind.PARTICLE_RENDER:
        extra["inputs"] = {"cache": _cache_hash(session, job, spec, layer, frame)}
    elif kind is LayerKind.ASSEMBLE:
        extra = _assemble_inputs(session, job, spec, layer, frame, output_root=output_root)
    return TileTask(
        tile_id=tile.id,
        attempt=tile.attempts,
        job_id=job.id,
        layer=layer.name,
        kind=kind,
        frame=frame.number,
        index=tile.index,
        width=spec.resolution.width,
        height=spec.resolution.height,
        rect=tile.rect,
        render_rect=tile.render_pixels,
        layer_spec=layer_spec.model_dump(mode="json"),
        camera=spec.camera.model_dump(mode="json"),
        **extra,
    )


def _cache_hash(
    session: Session, job: m.Job, spec: schemas.JobSpec, layer: m.Layer, frame: m.Frame
) -> str:
    """A render reads its own cache asset, or the frame cache its sim layer wrote."""
    layer_spec = spec.layer(layer.name)
    if layer_spec.input_asset_version is not None:
        return _asset_hash(session, layer_spec)
    sim = next(d for d in layer.depends_on if spec.layer(d).kind is LayerKind.PARTICLE_SIM)
    return _upstream_tiles(session, job, sim, frame.number)[0].output_hash or ""


def _assemble_inputs(
    session: Session,
    job: m.Job,
    spec: schemas.JobSpec,
    layer: m.Layer,
    frame: m.Frame,
    *,
    output_root: Path,
) -> dict[str, Any]:
    """The frame's render tiles, where the EXR goes, and the provenance for its header."""
    render = next(d for d in layer.depends_on if spec.layer(d).kind is LayerKind.PARTICLE_RENDER)
    input_tiles = tuple(
        InputTile(
            tile_id=t.id,
            rect=t.rect,
            render_rect=t.render_pixels,
            content_hash=t.output_hash or "",
        )
        for t in _upstream_tiles(session, job, render, frame.number)
    )
    shot = session.get_one(m.Shot, job.shot_id)
    show = session.get_one(m.Show, job.show_id)
    studio = session.get_one(m.Studio, job.studio_id)
    out_path = fr.output_path(
        output_root,
        studio=studio.name,
        show=show.name,
        sequence=shot.sequence,
        shot=shot.name,
        job=job,
        layer=layer.name,
        frame=frame.number,
    )
    render_frame = _upstream_frame(session, job, render, frame.number)
    return {
        "input_tiles": input_tiles,
        "channels": tuple(expected_channels(spec, spec.layer(layer.name))),
        "output_path": str(out_path),
        "attributes": {
            "delta/studio": studio.name,
            "delta/show": show.name,
            "delta/shot": f"{shot.sequence}/{shot.name}",
            "delta/job": f"{job.id}:{job.name}",
            "delta/layer": render,
            "delta/frame": frame.number,
            "delta/renderer": RENDERER,
            "delta/tile_plan": _plan_json(render_frame.tile_plan),
            "delta/submitted_by": job.submitted_by,
        },
    }


def _asset_hash(session: Session, layer_spec: schemas.LayerSpec) -> str:
    version = session.get_one(m.AssetVersion, layer_spec.input_asset_version)
    return version.content_hash


def _upstream_frame(session: Session, job: m.Job, layer: str, number: int) -> m.Frame:
    return session.execute(
        select(m.Frame)
        .join(m.Layer, m.Layer.id == m.Frame.layer_id)
        .where(m.Layer.job_id == job.id, m.Layer.name == layer, m.Frame.number == number)
    ).scalar_one()


def _upstream_tiles(session: Session, job: m.Job, layer: str, number: int) -> list[m.Tile]:
    frame = _upstream_frame(session, job, layer, number)
    return list(
        session.scalars(select(m.Tile).where(m.Tile.frame_id == frame.id).order_by(m.Tile.index))
    )


def _plan_json(plan: dict[str, Any] | None) -> str:
    return json.dumps(plan or {}, separators=(",", ":"), sort_keys=True)

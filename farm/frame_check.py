"""``farm check-frames``: re-read a job's assembled frames and report what is wrong with them."""

from __future__ import annotations

from pathlib import PurePath

from sqlalchemy import select
from sqlalchemy.orm import Session

from farm import schemas
from farm.db import models as m
from farm.db.queries import get_job_row
from farm.exr.check import check_frames
from farm.vocab import AOV, AOV_CHANNELS, LayerKind


def expected_channels(spec: schemas.JobSpec, layer: schemas.LayerSpec) -> list[str]:
    """EXR channels an assemble layer must write: the AOVs of the render layers it assembles."""
    aovs: list[AOV] = []
    for dep in layer.depends_on:
        upstream = spec.layer(dep)
        if upstream.kind is LayerKind.PARTICLE_RENDER:
            aovs.extend(a for a in upstream.aovs if a not in aovs)
    return [channel for aov in aovs for channel in AOV_CHANNELS[aov]]


def check_job_frames(session: Session, studio_id: int, job_id: int) -> schemas.FrameCheckOut:
    """Check every frame of every assemble layer of the job (missing frames included)."""
    job = get_job_row(session, studio_id, job_id)
    spec = schemas.JobSpec.model_validate(job.spec)
    problems: list[schemas.FrameProblemOut] = []
    checked = 0
    for layer_spec in spec.layers:
        if layer_spec.kind is not LayerKind.ASSEMBLE:
            continue
        layer = session.scalar(
            select(m.Layer).where(m.Layer.job_id == job.id, m.Layer.name == layer_spec.name)
        )
        assert layer is not None and spec.resolution is not None  # an assemble layer has one
        paths = {frame.number: frame.output_path for frame in layer.frames}
        checked += len(paths)
        for problem in check_frames(
            paths,
            width=spec.resolution.width,
            height=spec.resolution.height,
            channels=expected_channels(spec, layer_spec),
        ):
            problems.append(
                schemas.FrameProblemOut(
                    frame=problem.frame, path=PurePath(problem.path).name, problem=problem.problem
                )
            )
    return schemas.FrameCheckOut(job_id=job.id, frames_checked=checked, problems=problems)

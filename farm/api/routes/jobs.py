"""Jobs: submit a spec, read the live state of every layer, frame and tile, check frames."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from farm import schemas
from farm.api.deps import SUBMITTERS, Ctx, CurrentUser, Db, Id, require_role
from farm.db import queries, shares
from farm.frame_check import check_job_frames
from farm.inputs import validate_job_inputs
from farm.vocab import MAX_ID

router = APIRouter(tags=["jobs"])


@router.post("/jobs", status_code=201, dependencies=[require_role(*SUBMITTERS)])
def submit_job(
    spec: schemas.JobSpec, user: CurrentUser, session: Db, context: Ctx
) -> schemas.JobOut:
    """Validate and store a job; the dispatcher picks it up on its next tick.

    Particle caches given as input assets are checked here, before any tile is sent, so bad
    particles (NaN, negative radii, missing frames) are a 422 naming the field, not a failed tile.
    """
    queries.get_shot(session, user.studio_id, spec.shot_id)
    validate_job_inputs(session, context.store, user.studio_id, spec)
    job = queries.submit_job(session, user, spec)
    return queries.job_detail(session, user.studio_id, job.id)


@router.get("/jobs")
def list_jobs(
    user: CurrentUser,
    session: Db,
    show_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> list[schemas.JobSummary]:
    return [
        schemas.JobSummary.model_validate(j)
        for j in queries.list_jobs(session, user.studio_id, show_id)
    ]


@router.get("/jobs/{job_id}")
def get_job(job_id: Id, user: CurrentUser, session: Db) -> schemas.JobOut:
    return queries.job_detail(session, user.studio_id, job_id)


@router.patch("/jobs/{job_id}", dependencies=[require_role(*SUBMITTERS)])
def update_job(
    job_id: Id, spec: schemas.JobUpdate, user: CurrentUser, session: Db
) -> schemas.JobSummary:
    """Change a job's priority (0-100) among its own studio's work."""
    job = queries.get_job_row(session, user.studio_id, job_id)
    if spec.priority is not None:
        job = shares.set_priority(session, user.studio_id, job_id, spec.priority)
    return schemas.JobSummary.model_validate(job)


@router.get("/jobs/{job_id}/check")
def check_frames(job_id: Id, user: CurrentUser, session: Db) -> schemas.FrameCheckOut:
    """Re-read the job's assembled frames: missing, wrong size or channels, NaN/inf pixels."""
    return check_job_frames(session, user.studio_id, job_id)

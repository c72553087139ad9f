"""Jobs: submit a spec, read the live state of every layer, frame and tile, check frames."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from farm import schemas
from farm.api.deps import SUBMITTERS, Ctx, CurrentUser, Db, Id, require_role
from farm.db import control, queries, shares
from farm.frame_check import check_job_frames
from farm.states import JobAction
from farm.vocab import MAX_ID

router = APIRouter(tags=["jobs"])


@router.post("/jobs", status_code=201, dependencies=[require_role(*SUBMITTERS)])
def submit_job(
    spec: schemas.JobSpec, user: CurrentUser, session: Db, context: Ctx
) -> schemas.JobOut:
    """Validate and store a job; the dispatcher picks it up on its next tick.

    The spec's structure was checked by its schema; :func:`queries.submit_job` checks it against
    the farm, once (the shot, limits, pools, input assets and the frames they hold), so a bad
    spec is a 422 naming the field, never a failed tile.
    """
    job = queries.submit_job(session, user, spec, limits=context.limits, store=context.store)
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
    """Change a job's priority (0-100) among its own studio's work (applies on the next tick)."""
    job = queries.get_job_row(session, user.studio_id, job_id)
    if spec.priority is not None:
        job = shares.set_priority(session, user.studio_id, job_id, spec.priority)
    return schemas.JobSummary.model_validate(job)


@router.get("/jobs/{job_id}/check")
def check_frames(job_id: Id, user: CurrentUser, session: Db) -> schemas.FrameCheckOut:
    """Re-read the job's assembled frames: missing, wrong size or channels, NaN/inf pixels."""
    return check_job_frames(session, user.studio_id, job_id)


Wait = Annotated[
    float,
    Query(ge=0, le=30, description="seconds to wait for the dispatcher to apply it (0: do not)"),
]


def _control(
    action: JobAction,
    job_id: int,
    user: CurrentUser,
    session: Db,
    context: Ctx,
    wait_s: float,
    args: dict[str, object] | None = None,
) -> schemas.JobCommandOut:
    """Queue the command; with ``wait``, commit it at once and wait for the dispatcher."""
    if wait_s <= 0:
        return control.out(control.request(session, user, job_id, action, args))
    with context.db.session() as own:  # committed on leaving: the dispatcher can read it
        command_id = control.request(own, own.get_one(type(user), user.id), job_id, action, args).id
    return control.wait_applied(context.db, user.studio_id, job_id, command_id, wait_s)


@router.post("/jobs/{job_id}/pause", status_code=202, dependencies=[require_role(*SUBMITTERS)])
def pause_job(
    job_id: Id, user: CurrentUser, session: Db, context: Ctx, wait: Wait = 0
) -> schemas.JobCommandOut:
    """Dispatch nothing more of the job; what runs finishes. 409 when it has ended or is paused."""
    return _control(JobAction.PAUSE, job_id, user, session, context, wait)


@router.post("/jobs/{job_id}/resume", status_code=202, dependencies=[require_role(*SUBMITTERS)])
def resume_job(
    job_id: Id, user: CurrentUser, session: Db, context: Ctx, wait: Wait = 0
) -> schemas.JobCommandOut:
    """Dispatch the job's work again. 409 when it is not paused."""
    return _control(JobAction.RESUME, job_id, user, session, context, wait)


@router.post("/jobs/{job_id}/cancel", status_code=202, dependencies=[require_role(*SUBMITTERS)])
def cancel_job(
    job_id: Id, user: CurrentUser, session: Db, context: Ctx, wait: Wait = 0
) -> schemas.JobCommandOut:
    """Cancel every unfinished tile; running ones are stopped (``ray.cancel``) and recorded as
    cancelled, and no frame of the job is assembled afterwards. 409 when it has ended."""
    return _control(JobAction.CANCEL, job_id, user, session, context, wait)


@router.post("/jobs/{job_id}/retry", status_code=202, dependencies=[require_role(*SUBMITTERS)])
def retry_job(
    job_id: Id,
    user: CurrentUser,
    session: Db,
    context: Ctx,
    spec: schemas.RetryRequest | None = None,
    wait: Wait = 0,
) -> schemas.JobCommandOut:
    """Run failed and cancelled tiles again (of some layers or frames), each with a fresh budget
    of attempts. 409 when there is nothing to retry."""
    args = spec.model_dump(exclude_none=True) if spec is not None else {}
    return _control(JobAction.RETRY, job_id, user, session, context, wait, args)


@router.get("/jobs/{job_id}/commands/{command_id}")
def get_command(
    job_id: Id, command_id: Id, user: CurrentUser, session: Db
) -> schemas.JobCommandOut:
    """A queued or applied pause, resume, cancel or retry."""
    return control.out(control.get(session, user.studio_id, job_id, command_id))

"""Jobs: submit a spec, read the live state of every layer, frame and tile, check frames."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from farm import schemas
from farm.api.deps import SUBMITTERS, Ctx, CurrentUser, Db, Id, require_role
from farm.api.errors import error_responses
from farm.api.paging import Paging
from farm.db import control, queries, shares
from farm.frame_check import check_job_frames
from farm.states import JobAction, TileState
from farm.vocab import MAX_ID

router = APIRouter(tags=["jobs"])


@router.post(
    "/jobs",
    status_code=201,
    dependencies=[require_role(*SUBMITTERS)],
    # 404: the spec's shot is not the studio's; 409: the studio's limit of unfinished tiles
    responses=error_responses(403, 404, 409),
)
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


@router.post(
    "/jobs/openjd",
    status_code=201,
    dependencies=[require_role(*SUBMITTERS)],
    responses=error_responses(403, 404, 409),
)
def submit_openjd(
    body: schemas.OpenJDSubmit, user: CurrentUser, session: Db, context: Ctx
) -> schemas.JobOut:
    """Submit an Open Job Description template (``jobtemplate-2023-09``) with its parameter
    values: each step becomes a command layer whose frames are its tasks, run on the workers
    by ``openjd-sessions``. A template the farm cannot honour (invalid, a value missing or out
    of its constraints, a host requirement no pool meets, a dependency cycle) is a 422
    naming the reason."""
    from farm.openjd import decode_template, to_job_spec

    source = schemas.OpenJDSource(
        template=decode_template(body.template),
        parameters=body.parameters,
        environments=tuple(decode_template(e) for e in body.environments),
    )
    spec = to_job_spec(source, shot_id=body.shot_id, name=body.name, priority=body.priority)
    spec = spec.model_copy(
        update={"after_jobs": body.after_jobs, "after_assets": body.after_assets}
    )
    job = queries.submit_job(session, user, spec, limits=context.limits, store=context.store)
    return queries.job_detail(session, user.studio_id, job.id)


@router.get("/jobs")
def list_jobs(
    user: CurrentUser,
    session: Db,
    page: Paging,
    show_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> schemas.Page[schemas.JobSummary]:
    """The studio's jobs, newest first, of one show or all."""
    rows = queries.list_jobs(session, user.studio_id, page, show_id=show_id)
    return schemas.Page[schemas.JobSummary].model_validate(rows)


@router.get("/jobs/{job_id}", responses=error_responses(404))
def get_job(
    job_id: Id,
    user: CurrentUser,
    session: Db,
    tiles: Annotated[
        bool,
        Query(description="false: frames count their tiles by state instead of listing them"),
    ] = True,
) -> schemas.JobOut:
    """The job, its layers and frames, and every tile (the live tile grid's source).

    A big job has millions of tiles: ask with ``tiles=false`` and page them with
    ``GET /jobs/{job_id}/tiles``.
    """
    return queries.job_detail(session, user.studio_id, job_id, tiles=tiles)


@router.get("/jobs/{job_id}/tiles", responses=error_responses(404))
def list_tiles(
    job_id: Id,
    user: CurrentUser,
    session: Db,
    page: Paging,
    state: Annotated[TileState | None, Query(description="only tiles in this state")] = None,
    layer: Annotated[
        str | None, Query(min_length=1, max_length=64, description="only this layer's tiles")
    ] = None,
    frame: Annotated[
        int | None, Query(ge=-1_000_000_000, le=1_000_000_000, description="only this frame")
    ] = None,
) -> schemas.Page[schemas.JobTileOut]:
    """The job's tiles in the order they were planned, a page at a time.

    Experimental: may change.
    """
    rows = queries.list_tiles(
        session, user.studio_id, job_id, page, state=state, layer=layer, frame=frame
    )
    return schemas.Page[schemas.JobTileOut].model_validate(rows)


@router.patch(
    "/jobs/{job_id}", dependencies=[require_role(*SUBMITTERS)], responses=error_responses(403, 404)
)
def update_job(
    job_id: Id, spec: schemas.JobUpdate, user: CurrentUser, session: Db
) -> schemas.JobSummary:
    """Change a job's priority (0-100) among its own studio's work (applies on the next tick)."""
    job = queries.get_job_row(session, user.studio_id, job_id)
    if spec.priority is not None:
        job = shares.set_priority(session, user.studio_id, job_id, spec.priority)
    return schemas.JobSummary.model_validate(job)


@router.get("/jobs/{job_id}/check", responses=error_responses(404))
def check_frames(job_id: Id, user: CurrentUser, session: Db) -> schemas.FrameCheckOut:
    """Re-read the job's assembled frames: missing, wrong size or channels, NaN/inf pixels."""
    return check_job_frames(session, user.studio_id, job_id)


Wait = Annotated[
    float,
    Query(ge=0, le=30, description="seconds to wait for the dispatcher to apply it (0: do not)"),
]


_CONTROL: dict[str, Any] = {
    "dependencies": [require_role(*SUBMITTERS)],
    # 409: the rule refuses the command in the job's state (pause a paused job, ...)
    "responses": error_responses(403, 404, 409),
}


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


@router.post("/jobs/{job_id}/pause", status_code=202, **_CONTROL)
def pause_job(
    job_id: Id, user: CurrentUser, session: Db, context: Ctx, wait: Wait = 0
) -> schemas.JobCommandOut:
    """Dispatch nothing more of the job; what runs finishes. 409 when it has ended or is paused."""
    return _control(JobAction.PAUSE, job_id, user, session, context, wait)


@router.post("/jobs/{job_id}/resume", status_code=202, **_CONTROL)
def resume_job(
    job_id: Id, user: CurrentUser, session: Db, context: Ctx, wait: Wait = 0
) -> schemas.JobCommandOut:
    """Dispatch the job's work again. 409 when it is not paused."""
    return _control(JobAction.RESUME, job_id, user, session, context, wait)


@router.post("/jobs/{job_id}/cancel", status_code=202, **_CONTROL)
def cancel_job(
    job_id: Id, user: CurrentUser, session: Db, context: Ctx, wait: Wait = 0
) -> schemas.JobCommandOut:
    """Cancel every unfinished tile; running ones are stopped (``ray.cancel``) and recorded as
    cancelled, and no frame of the job is assembled afterwards. 409 when it has ended."""
    return _control(JobAction.CANCEL, job_id, user, session, context, wait)


@router.post("/jobs/{job_id}/retry", status_code=202, **_CONTROL)
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


@router.get("/jobs/{job_id}/commands/{command_id}", responses=error_responses(404))
def get_command(
    job_id: Id, command_id: Id, user: CurrentUser, session: Db
) -> schemas.JobCommandOut:
    """A queued or applied pause, resume, cancel or retry."""
    return control.out(control.get(session, user.studio_id, job_id, command_id))

"""Shows and shots of the caller's studio."""

from __future__ import annotations

from fastapi import APIRouter

from farm import schemas
from farm.api.deps import SUBMITTERS, CurrentUser, Db, Id, require_role
from farm.api.errors import error_responses
from farm.api.paging import Paging
from farm.db import queries
from farm.vocab import Role

router = APIRouter(tags=["shows"])


@router.post(
    "/shows",
    status_code=201,
    dependencies=[require_role(*SUBMITTERS, Role.PRODUCER)],
    responses=error_responses(403, 409),
)
def create_show(spec: schemas.ShowCreate, user: CurrentUser, session: Db) -> schemas.ShowOut:
    return schemas.ShowOut.model_validate(queries.create_show(session, user.studio_id, spec))


@router.get("/shows")
def list_shows(user: CurrentUser, session: Db, page: Paging) -> schemas.Page[schemas.ShowOut]:
    """The studio's shows, oldest first."""
    rows = queries.list_shows(session, user.studio_id, page)
    return schemas.Page[schemas.ShowOut].model_validate(rows)


@router.get("/shows/{show_id}", responses=error_responses(404))
def get_show(show_id: Id, user: CurrentUser, session: Db) -> schemas.ShowOut:
    return schemas.ShowOut.model_validate(queries.get_show(session, user.studio_id, show_id))


@router.post(
    "/shows/{show_id}/shots",
    status_code=201,
    dependencies=[require_role(*SUBMITTERS)],
    responses=error_responses(403, 404, 409),
)
def create_shot(
    show_id: Id, spec: schemas.ShotCreate, user: CurrentUser, session: Db
) -> schemas.ShotOut:
    shot = queries.create_shot(session, user.studio_id, show_id, spec)
    return schemas.ShotOut.model_validate(shot)


@router.get("/shows/{show_id}/shots", responses=error_responses(404))
def list_shots(
    show_id: Id, user: CurrentUser, session: Db, page: Paging
) -> schemas.Page[schemas.ShotOut]:
    """The show's shots, oldest first."""
    rows = queries.list_shots(session, user.studio_id, show_id, page)
    return schemas.Page[schemas.ShotOut].model_validate(rows)

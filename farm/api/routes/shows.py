"""Shows and shots of the caller's studio."""

from __future__ import annotations

from fastapi import APIRouter

from farm import schemas
from farm.api.deps import SUBMITTERS, CurrentUser, Db, Id, require_role
from farm.db import queries
from farm.vocab import Role

router = APIRouter(tags=["shows"])


@router.post("/shows", status_code=201, dependencies=[require_role(*SUBMITTERS, Role.PRODUCER)])
def create_show(spec: schemas.ShowCreate, user: CurrentUser, session: Db) -> schemas.ShowOut:
    return schemas.ShowOut.model_validate(queries.create_show(session, user.studio_id, spec))


@router.get("/shows")
def list_shows(user: CurrentUser, session: Db) -> list[schemas.ShowOut]:
    return [schemas.ShowOut.model_validate(s) for s in queries.list_shows(session, user.studio_id)]


@router.get("/shows/{show_id}")
def get_show(show_id: Id, user: CurrentUser, session: Db) -> schemas.ShowOut:
    return schemas.ShowOut.model_validate(queries.get_show(session, user.studio_id, show_id))


@router.post("/shows/{show_id}/shots", status_code=201, dependencies=[require_role(*SUBMITTERS)])
def create_shot(
    show_id: Id, spec: schemas.ShotCreate, user: CurrentUser, session: Db
) -> schemas.ShotOut:
    shot = queries.create_shot(session, user.studio_id, show_id, spec)
    return schemas.ShotOut.model_validate(shot)


@router.get("/shows/{show_id}/shots")
def list_shots(show_id: Id, user: CurrentUser, session: Db) -> list[schemas.ShotOut]:
    shots = queries.list_shots(session, user.studio_id, show_id)
    return [schemas.ShotOut.model_validate(s) for s in shots]

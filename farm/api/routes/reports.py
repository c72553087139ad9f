"""Cost reports and pools."""

from __future__ import annotations

from fastapi import APIRouter

from farm import schemas
from farm.api.deps import CurrentUser, Db, Id
from farm.cost.report import show_cost_report
from farm.db import queries

router = APIRouter(tags=["reports"])


@router.get("/shows/{show_id}/report")
def show_report(show_id: Id, user: CurrentUser, session: Db) -> schemas.CostReport:
    return show_cost_report(session, user.studio_id, show_id)


@router.get("/pools")
def list_pools(_user: CurrentUser, session: Db) -> list[schemas.PoolOut]:
    return [schemas.PoolOut.model_validate(p) for p in queries.list_pools(session)]


@router.get("/me")
def whoami(user: CurrentUser) -> schemas.UserOut:
    return schemas.UserOut.model_validate(user)

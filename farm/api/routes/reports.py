"""Cost reports and pools."""

from __future__ import annotations

from fastapi import APIRouter

from farm import schemas
from farm.api.deps import CurrentUser, Db, Id
from farm.api.errors import error_responses
from farm.api.paging import Paging
from farm.cost.report import show_cost_report
from farm.db import queries
from farm.db.paging import list_page

router = APIRouter(tags=["reports"])


@router.get("/shows/{show_id}/report", responses=error_responses(404))
def show_report(show_id: Id, user: CurrentUser, session: Db) -> schemas.CostReport:
    return show_cost_report(session, user.studio_id, show_id)


@router.get("/pools")
def list_pools(_user: CurrentUser, session: Db, page: Paging) -> schemas.Page[schemas.PoolOut]:
    """The farm's pools, by name."""
    rows = list_page(queries.list_pools(session), page, lambda p: (p.name,), (str,))
    return schemas.Page[schemas.PoolOut].model_validate(rows)


@router.get("/me")
def whoami(user: CurrentUser) -> schemas.UserOut:
    return schemas.UserOut.model_validate(user)

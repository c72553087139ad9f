"""Farm operation across studios: quotas, licences and rush (the ``operator`` role only).

Every route here answers 403 to any other role, with the usual error body.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from farm import schemas
from farm.api.deps import Db, Id, require_role
from farm.api.errors import error_responses
from farm.api.paging import Paging
from farm.db import shares
from farm.db.paging import list_page
from farm.vocab import Role

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[require_role(Role.OPERATOR)],
    responses=error_responses(403),
)

StudioName = Annotated[str, Path(min_length=1, max_length=64, description="studio name")]
PoolName = Annotated[str, Path(min_length=1, max_length=64, description="pool name")]


@router.get("/quotas")
def list_quotas(session: Db, page: Paging) -> schemas.Page[schemas.QuotaOut]:
    """Every studio's quotas, by studio id then pool."""
    rows = list_page(shares.list_quotas(session), page, lambda q: (q.studio_id, q.pool), (int, str))
    return schemas.Page[schemas.QuotaOut].model_validate(rows)


@router.put("/quotas/{studio}/{pool}", responses=error_responses(404, 409))
def set_quota(
    studio: StudioName, pool: PoolName, spec: schemas.QuotaCreate, session: Db
) -> schemas.QuotaOut:
    """Set a studio's guarantee, weight and ceiling on a pool; applies on the next tick."""
    return schemas.QuotaOut.model_validate(shares.set_quota(session, studio, pool, spec))


@router.delete("/quotas/{studio}/{pool}", status_code=204, responses=error_responses(404))
def delete_quota(studio: StudioName, pool: PoolName, session: Db) -> Response:
    shares.delete_quota(session, studio, pool)
    return Response(status_code=204)


@router.get("/licences")
def list_licences(session: Db, page: Paging) -> schemas.Page[schemas.LicenceOut]:
    """Every licence, by name."""
    rows = list_page(shares.list_licences(session), page, lambda lic: (lic.name,), (str,))
    return schemas.Page[schemas.LicenceOut].model_validate(rows)


@router.put("/licences/{name}", responses=error_responses(409))  # 409: a concurrent PUT
def set_licence(
    name: Annotated[str, Path(min_length=1, max_length=64)],
    spec: schemas.LicenceCreate,
    session: Db,
) -> schemas.LicenceOut:
    return shares.set_licence(session, name, spec)


@router.post("/jobs/{job_id}/rush", responses=error_responses(404))
def set_rush(job_id: Id, spec: schemas.RushUpdate, session: Db) -> schemas.JobSummary:
    """Mark a job rush: it goes first in its studio and may preempt (limited, never lost)."""
    return schemas.JobSummary.model_validate(shares.set_rush(session, job_id, spec.rush))

"""Sharing between studios: the assets a studio may read, and the grants that widen that.

A studio reads its own assets and those another studio shared with it (a whole show, or one
asset with every version), read-only: publishing stays with the owner
(``POST /shows/{show_id}/asset-versions``). Anything the caller may not read answers 404
exactly as a missing one would. Studio names are not secret on a shared farm, so granting to
an unknown studio is a 404 that names it. Blobs stay per studio: ``POST /blobs/missing`` never
counts another studio's bytes as the caller's, shared or not.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from farm import schemas
from farm.api.deps import CurrentUser, Db, Id, require_role
from farm.api.errors import error_responses
from farm.api.paging import Paging
from farm.db import sharing
from farm.vocab import MAX_ID, Role

router = APIRouter()

MANAGERS = (Role.ADMIN, Role.TD)
"""Roles that manage a studio's shows, and so may share them or stop sharing them."""


# ----------------------------------------------------------------------------- assets
@router.get("/assets", tags=["assets"])
def list_assets(
    user: CurrentUser,
    session: Db,
    page: Paging,
    show_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="only the assets of this show")
    ] = None,
) -> schemas.Page[schemas.AssetOut]:
    """The assets your studio may read, oldest first: its own and those shared with it
    (``shared`` true, ``studio`` the owner), each with its newest version."""
    rows = sharing.list_assets(session, user.studio_id, page, show_id=show_id)
    return schemas.Page[schemas.AssetOut].model_validate(rows)


@router.get("/assets/{asset_id}", tags=["assets"], responses=error_responses(404))
def get_asset(asset_id: Id, user: CurrentUser, session: Db) -> schemas.AssetOut:
    return sharing.get_asset(session, user.studio_id, asset_id)


@router.get("/assets/{asset_id}/versions", tags=["assets"], responses=error_responses(404))
def list_asset_versions(
    asset_id: Id, user: CurrentUser, session: Db, page: Paging
) -> schemas.Page[schemas.AssetVersionOut]:
    """An asset's versions, oldest first."""
    rows = sharing.list_versions(session, user.studio_id, asset_id, page)
    return schemas.Page[schemas.AssetVersionOut].model_validate(rows)


@router.get("/asset-versions/{version_id}", tags=["assets"], responses=error_responses(404))
def get_asset_version(version_id: Id, user: CurrentUser, session: Db) -> schemas.AssetVersionOut:
    version = sharing.get_version(session, user.studio_id, version_id)
    return schemas.AssetVersionOut.model_validate(version)


# ----------------------------------------------------------------------------- grants
@router.post(
    "/shares",
    status_code=201,
    tags=["sharing"],
    dependencies=[require_role(*MANAGERS)],
    # 403: a shared show or asset (only its owner shares it); 404: the show or asset is not
    # yours, or no studio has that name; 409: the same share is live already.
    responses=error_responses(403, 404, 409),
)
def create_share(spec: schemas.ShareCreate, user: CurrentUser, session: Db) -> schemas.ShareOut:
    """Let another studio read one of your shows (every asset in it, later ones too) or one
    asset (every version), and use them as job inputs; never publish into them.

    An unknown studio is a 404 naming it: studio names are not secret on a shared farm.
    """
    return schemas.ShareOut.model_validate(sharing.grant(session, user, spec))


@router.get("/shares", tags=["sharing"])
def list_shares(user: CurrentUser, session: Db, page: Paging) -> schemas.Page[schemas.ShareOut]:
    """The live shares your studio gave and received, oldest first."""
    rows = sharing.list_shares(session, user.studio_id, page)
    return schemas.Page[schemas.ShareOut].model_validate(rows)


@router.get("/shares/audit", tags=["sharing"])
def list_share_audit(
    user: CurrentUser, session: Db, page: Paging
) -> schemas.Page[schemas.ShareAuditOut]:
    """Every grant and revoke your studio gave or received, newest first."""
    rows = sharing.list_audit(session, user.studio_id, page)
    return schemas.Page[schemas.ShareAuditOut].model_validate(rows)


@router.delete(
    "/shares/{share_id}",
    tags=["sharing"],
    dependencies=[require_role(*MANAGERS)],
    # 403: a share your studio received (only the grantor revokes); 409: already revoked.
    responses=error_responses(403, 404, 409),
)
def revoke_share(share_id: Id, user: CurrentUser, session: Db) -> schemas.ShareOut:
    """Stop sharing at once: the other studio's next read of it is a 404. Jobs it already
    submitted keep the versions they were given."""
    return schemas.ShareOut.model_validate(sharing.revoke(session, user, share_id))

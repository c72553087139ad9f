"""Blobs (content-addressed bytes) and asset versions.

A client asks which hashes are missing, PUTs only those, then registers an asset version that
points at a hash. The server hashes every upload itself and refuses bytes that do not match.
A studio sees only blobs it sent: dedupe saves storage, never reveals another studio's files.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from farm import schemas
from farm.api.deps import SUBMITTERS, Ctx, CurrentUser, Db, Id, require_role
from farm.api.errors import error_responses
from farm.db import queries
from farm.errors import NotFound
from farm.inputs import PARTICLE_KINDS, describe_particles
from farm.storage import check_hash

router = APIRouter(tags=["assets"])


@router.post("/blobs/missing")
def missing_blobs(
    query: schemas.MissingBlobsQuery, user: CurrentUser, session: Db
) -> schemas.MissingBlobsOut:
    return schemas.MissingBlobsOut(
        missing=queries.missing_blobs(session, user.studio_id, query.hashes)
    )


@router.head("/blobs/{content_hash}", responses=error_responses(404))
def head_blob(content_hash: str, user: CurrentUser, session: Db) -> Response:
    check_hash(content_hash)
    if not queries.studio_has_blob(session, user.studio_id, content_hash):
        raise NotFound(f"blob {content_hash} not found")
    return Response(status_code=200)


@router.put(
    "/blobs/{content_hash}",
    status_code=201,
    dependencies=[require_role(*SUBMITTERS)],
    responses=error_responses(403, 409),  # 409: the bytes do not hash to content_hash
)
async def put_blob(
    content_hash: str, request: Request, user: CurrentUser, session: Db, context: Ctx
) -> schemas.BlobOut:
    """Upload raw bytes (``application/octet-stream``); the server verifies their sha256."""
    check_hash(content_hash)
    spool = tempfile.NamedTemporaryFile(delete=False, prefix="upload-")  # noqa: SIM115
    try:
        with spool:
            async for chunk in request.stream():
                spool.write(chunk)
        result = await run_in_threadpool(
            context.store.put_file, spool.name, expect_hash=content_hash
        )
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(spool.name)
    new_for_studio = await run_in_threadpool(
        queries.record_blob,
        session,
        user.studio_id,
        content_hash=result.content_hash,
        size_bytes=result.size_bytes,
        storage_key=result.storage_key,
    )
    return schemas.BlobOut(
        content_hash=result.content_hash, size_bytes=result.size_bytes, created=new_for_studio
    )


@router.post(
    "/shows/{show_id}/asset-versions",
    status_code=201,
    dependencies=[require_role(*SUBMITTERS)],
    responses=error_responses(403, 404, 409),  # 409: another publish took the version number
)
def register_asset_version(
    show_id: Id, spec: schemas.AssetVersionCreate, user: CurrentUser, session: Db, context: Ctx
) -> schemas.AssetVersionOut:
    """Publish an uploaded blob as the next version of an asset. A particle cache or seed is
    read and validated here, once (a 422 names the first bad particle); jobs using it then
    only compare their frames with what was recorded."""
    queries.get_show(session, user.studio_id, show_id)  # another studio's show: 404 first
    meta = None
    if spec.kind in PARTICLE_KINDS and queries.studio_has_blob(
        session, user.studio_id, spec.content_hash
    ):
        meta = describe_particles(context.store, spec.content_hash, name=spec.asset)
    version = queries.register_asset_version(session, user, show_id, spec, meta=meta)
    return schemas.AssetVersionOut.model_validate(version)

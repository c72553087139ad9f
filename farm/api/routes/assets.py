"""Blobs (content-addressed bytes) and asset versions.

A client asks which hashes are missing, PUTs only those (small ones many to a ``POST
/blobs/pack``), then registers an asset version that points at a hash: a file's, or a directory
manifest's. The server hashes every upload itself and refuses bytes that do not match, a body
over ``FARM_MAX_UPLOAD_BYTES`` (413) and a studio past its storage quota (409), storing nothing.
A studio sees only blobs it sent: dedupe saves storage, never reveals another studio's files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, Request, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from farm import schemas
from farm.api.context import FarmContext
from farm.api.deps import SUBMITTERS, Ctx, CurrentUser, Db, Id, require_role
from farm.api.errors import error_responses
from farm.db import models as m
from farm.db import queries
from farm.errors import Conflict, InvalidSpec, NotFound, TooLarge
from farm.inputs import PARTICLE_KINDS, describe_particles
from farm.storage import PutResult, check_hash

router = APIRouter(tags=["assets"])

PACK_STORE_THREADS = 8
"""Packed blobs stored at once, all packs together (an S3 store's puts are round trips)."""


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
    # 409: the bytes do not hash to content_hash, or the studio's storage quota has no room;
    # 413: bigger than FARM_MAX_UPLOAD_BYTES. Either way nothing is stored.
    responses=error_responses(403, 409, 413),
)
async def put_blob(
    content_hash: str, request: Request, user: CurrentUser, session: Db, context: Ctx
) -> schemas.BlobOut:
    """Upload raw bytes (``application/octet-stream``); the server verifies their sha256.

    Refused before anything is stored: a body over ``FARM_MAX_UPLOAD_BYTES`` (413, as soon as
    its ``Content-Length`` or the bytes received pass the limit: the body is spooled to disk,
    never held in memory, and never read past the limit), and a blob the studio's storage
    quota (``[limits] max_storage_gb``) has no room for (409 naming what is used and the quota).
    """
    check_hash(content_hash)
    limit = context.max_upload_bytes
    declared = _content_length(request)
    if declared is not None:
        _check_upload_size(declared, limit)
        await _check_quota(session, user.studio_id, {content_hash: declared}, context)
    spool = tempfile.NamedTemporaryFile(delete=False, prefix="upload-")  # noqa: SIM115
    try:
        received = 0
        with spool:
            async for chunk in request.stream():
                received += len(chunk)
                _check_upload_size(received, limit)
                spool.write(chunk)
        if declared is None:  # chunked: the size is known only now
            await _check_quota(session, user.studio_id, {content_hash: received}, context)
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
    "/blobs/pack",
    status_code=201,
    dependencies=[require_role(*SUBMITTERS)],
    # 409: a blob's bytes do not match its hash, or the storage quota has no room; 413: the
    # pack or one of its blobs is too big. Either way nothing is stored.
    responses=error_responses(403, 409, 413),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                schemas.PACK_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def put_blob_pack(
    request: Request, user: CurrentUser, session: Db, context: Ctx
) -> schemas.BlobPackOut:
    """Upload many small blobs in one request (10,000 tiny files are 10,000 PUTs otherwise).

    The body (at most 16 MiB) is a sequence of blobs, each a 32-byte sha256 digest, its size
    as 8 bytes big-endian, then its bytes (:func:`farm.schemas.encode_pack`). All or nothing:
    every hash is checked and the quota counted before the first blob is stored.

    Experimental: may change.
    """
    limit = min(schemas.PACK_MAX_BYTES, context.max_upload_bytes)
    declared = _content_length(request)
    if declared is not None:
        _check_pack_size(declared, limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        _check_pack_size(len(body), limit)
    blobs = {content_hash: data for content_hash, data in schemas.decode_pack(bytes(body))}
    if not blobs:
        raise InvalidSpec("pack: empty; send at least one blob", field="body")
    await run_in_threadpool(_check_pack_hashes, blobs)
    await _check_quota(
        session, user.studio_id, {h: len(data) for h, data in blobs.items()}, context
    )
    stored = await run_in_threadpool(_store_pack, blobs, user.studio_id, context)
    return schemas.BlobPackOut(blobs=stored)


def _check_pack_size(size_bytes: int, limit_bytes: int) -> None:
    if size_bytes > limit_bytes:
        raise TooLarge(
            f"the pack is over {limit_bytes:,} bytes ({size_bytes:,} sent or declared): nothing "
            "was stored; send fewer blobs per pack, or big ones with PUT /blobs/{hash}"
        )


def _check_pack_hashes(blobs: dict[str, memoryview]) -> None:
    for content_hash, data in blobs.items():
        actual = hashlib.sha256(data).hexdigest()
        if actual != content_hash:
            raise Conflict(
                f"pack: bytes sent as {content_hash} hash to {actual}: the upload was corrupted "
                "or the hash is wrong; nothing was stored, send it again"
            )


def _store_pack(
    blobs: dict[str, memoryview], studio_id: int, context: FarmContext
) -> list[schemas.BlobOut]:
    # The bytes first, a few at a time across every pack the server is storing (an S3 put is a
    # few round trips); then the database, in a handful of statements in a short transaction
    # of its own. Recording blob by blob as they were stored held SQLite's one write lock
    # through every put: concurrent packs waited past the busy timeout ("database is locked").
    def put(content_hash: str, data: memoryview) -> PutResult:
        return context.store.put_small(bytes(data), expect_hash=content_hash)

    # Bytes the farm holds already (another studio's, an earlier pack) are not stored again:
    # re-sending a pack must not grow the bucket outside every studio's quota.
    with context.db.session() as session:
        known = _known(session, list(blobs))
    stored = {h: PutResult(h, len(d), "", created=False) for h, d in blobs.items() if h in known}
    fresh = {h: d for h, d in blobs.items() if h not in known}
    if context.store.packs_natively:  # S3: the pack is one object and its index
        stored.update(
            (r.content_hash, r)
            for r in context.store.put_pack([(h, bytes(data)) for h, data in fresh.items()])
        )
    else:
        executor = _pack_executor()
        futures = [executor.submit(put, h, data) for h, data in fresh.items()]
        try:
            stored.update((r.content_hash, r) for r in (future.result() for future in futures))
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    results = [stored[h] for h in blobs]
    for attempt in range(3):
        try:
            with context.db.session() as session:
                return _record_pack(session, studio_id, results)
        except IntegrityError:
            # Another upload recorded one of these blobs between the lookup and the insert:
            # look again (it is then known).
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


_pack_executor_lock = threading.Lock()
_pack_executors: dict[int, ThreadPoolExecutor] = {}


def _pack_executor() -> ThreadPoolExecutor:
    """This process's threads storing packed blobs (PACK_STORE_THREADS, shared by every pack)."""
    with _pack_executor_lock:
        executor = _pack_executors.get(os.getpid())
        if executor is None:
            executor = ThreadPoolExecutor(PACK_STORE_THREADS, "delta-pack")
            _pack_executors[os.getpid()] = executor
        return executor


def _known(session: Session, hashes: list[str]) -> set[str]:
    """Which of ``hashes`` the farm has stored (for any studio)."""
    known: set[str] = set()
    for start in range(0, len(hashes), queries.MANIFEST_CHECK_BATCH):
        some = hashes[start : start + queries.MANIFEST_CHECK_BATCH]
        known.update(
            session.scalars(select(m.Blob.content_hash).where(m.Blob.content_hash.in_(some)))
        )
    return known


def _record_pack(
    session: Session, studio_id: int, results: list[PutResult]
) -> list[schemas.BlobOut]:
    """Record a pack's stored blobs and the studio's grants (as :func:`queries.record_blob`
    does for one blob, in a few statements for all)."""
    hashes = [result.content_hash for result in results]
    known = _known(session, hashes)
    granted: set[str] = set()
    for start in range(0, len(hashes), queries.MANIFEST_CHECK_BATCH):
        some = hashes[start : start + queries.MANIFEST_CHECK_BATCH]
        granted.update(
            session.scalars(
                select(m.BlobGrant.content_hash).where(
                    m.BlobGrant.studio_id == studio_id, m.BlobGrant.content_hash.in_(some)
                )
            )
        )
    session.add_all(
        m.Blob(content_hash=r.content_hash, size_bytes=r.size_bytes, storage_key=r.storage_key)
        for r in results
        if r.content_hash not in known
    )
    session.flush()
    session.add_all(
        m.BlobGrant(studio_id=studio_id, content_hash=h) for h in hashes if h not in granted
    )
    session.flush()
    return [
        schemas.BlobOut(
            content_hash=r.content_hash,
            size_bytes=r.size_bytes,
            created=r.content_hash not in granted,
        )
        for r in results
    ]


def _content_length(request: Request) -> int | None:
    """The body's declared size, None when it is sent chunked (the server checks it matches)."""
    value = request.headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


def _check_upload_size(size_bytes: int, limit_bytes: int) -> None:
    if size_bytes > limit_bytes:
        raise TooLarge(
            f"the upload is over the farm's limit of {limit_bytes:,} bytes per blob "
            f"(FARM_MAX_UPLOAD_BYTES; {size_bytes:,} bytes sent or declared): nothing was "
            "stored; split the file, or ask the farm's operator to raise the limit"
        )


async def _check_quota(
    session: Session, studio_id: int, blobs: dict[str, int], context: FarmContext
) -> None:
    await run_in_threadpool(
        queries.check_storage_quota, session, studio_id, blobs, limits=context.limits
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
    only compare their frames with what was recorded. Only into the studio's own shows: a
    show or asset another studio shared is read-only (404, as for a show not shared)."""
    queries.get_own_show(session, user.studio_id, show_id)  # another studio's show: 404 first
    meta = None
    if queries.studio_has_blob(session, user.studio_id, spec.content_hash):
        # A directory version: every file its manifest names must be the studio's bytes.
        meta = queries.describe_manifest(session, context.store, user.studio_id, spec.content_hash)
        if meta is None and spec.kind in PARTICLE_KINDS:
            meta = describe_particles(context.store, spec.content_hash, name=spec.asset)
    version = queries.register_asset_version(session, user, show_id, spec, meta=meta)
    return schemas.AssetVersionOut.model_validate(version)

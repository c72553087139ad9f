"""Downloads of what jobs made and of asset bytes: frames, previews, contact sheets, blobs.

Everything comes back as bytes through the API (``farm fetch``), never as a path on the
farm's disks: a studio on another site, or a farm whose store is S3, reads them the same way.
Each answer carries the sha256 of its bytes for the client to verify. Another studio's job,
asset or blob answers 404 exactly as a missing one does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from fastapi.responses import StreamingResponse

from farm.api.deps import Ctx, CurrentUser, Db, Id
from farm.api.download import DOWNLOAD_RESPONSE, blob_response
from farm.api.errors import error_responses
from farm.db import outputs, queries, sharing
from farm.errors import NotFound
from farm.storage import check_hash

router = APIRouter()

LayerName = Annotated[
    str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]
FrameNumber = Annotated[int, Path(ge=-1_000_000_000, le=1_000_000_000)]
_DOWNLOAD: dict[int | str, dict[str, Any]] = {**DOWNLOAD_RESPONSE, **error_responses(404)}


@router.get(
    "/jobs/{job_id}/layers/{layer}/frames/{number}/{output}",
    tags=["jobs"],
    response_class=StreamingResponse,
    responses=_DOWNLOAD,
)
def download_frame(
    job_id: Id,
    layer: LayerName,
    number: FrameNumber,
    output: Literal["exr", "preview"],
    user: CurrentUser,
    session: Db,
    context: Ctx,
) -> StreamingResponse:
    """One frame's OpenEXR (``exr``) or PNG preview (``preview``), as its layer wrote it.

    The job's answer (``GET /jobs/{job_id}``) gives each frame's ``output_hash`` and
    ``preview_hash``: the bytes served here hash to them.
    """
    content_hash, name = outputs.frame_output(
        session, user.studio_id, job_id, layer, number, output
    )
    return blob_response(context.store, content_hash, name)


@router.get(
    "/jobs/{job_id}/layers/{layer}/frames/{number}/tiles/{index}/log",
    tags=["jobs"],
    response_class=StreamingResponse,
    responses=_DOWNLOAD,
)
def download_log(
    job_id: Id,
    layer: LayerName,
    number: FrameNumber,
    index: Annotated[int, Path(ge=0, le=4096)],
    user: CurrentUser,
    session: Db,
    context: Ctx,
) -> StreamingResponse:
    """A tile's log (a command task's stdout and stderr, with the session's own lines) from
    its last attempt that wrote one. Only the owning studio reads it."""
    found = outputs.tile_log(session, user.studio_id, job_id, layer, number, index)
    name = f"{layer}.{number}.{index}.log"
    if isinstance(found, tuple):  # still running: what it has written so far
        return StreamingResponse(
            iter([found[0].encode()]),
            media_type="text/plain; charset=utf-8",
            headers={"Content-Disposition": f'inline; filename="{name}"', "X-Log-Live": "1"},
        )
    return blob_response(context.store, found, name)


@router.get(
    "/jobs/{job_id}/layers/{layer}/contact-sheet",
    tags=["jobs"],
    response_class=StreamingResponse,
    responses=_DOWNLOAD,
)
def download_contact_sheet(
    job_id: Id, layer: LayerName, user: CurrentUser, session: Db, context: Ctx
) -> StreamingResponse:
    """A PNG of the layer's frame previews side by side, made when the job ends."""
    content_hash, name = outputs.contact_sheet(session, user.studio_id, job_id, layer)
    return blob_response(context.store, content_hash, name)


@router.get(
    "/blobs/{content_hash}",
    tags=["assets"],
    response_class=StreamingResponse,
    responses=_DOWNLOAD,
)
def download_blob(
    content_hash: str, user: CurrentUser, session: Db, context: Ctx
) -> StreamingResponse:
    """Bytes your studio uploaded (a file, or a folder's manifest). Another studio's bytes
    are 404 even when the farm holds them: read a shared asset through its version."""
    check_hash(content_hash)
    if not queries.studio_has_blob(session, user.studio_id, content_hash):
        raise NotFound(f"blob {content_hash} not found", field="content_hash")
    return blob_response(context.store, content_hash, content_hash)


@router.get(
    "/asset-versions/{version_id}/content",
    tags=["assets"],
    response_class=StreamingResponse,
    responses=_DOWNLOAD,
)
def download_asset_version(
    version_id: Id, user: CurrentUser, session: Db, context: Ctx
) -> StreamingResponse:
    """An asset version's bytes: the file, or for a folder its manifest (JSON: each path's
    hash, size and mode; fetch each file with ``.../files/{path}``). Readable by the owner and
    by the studios it was shared with."""
    version = sharing.get_version(session, user.studio_id, version_id)
    return blob_response(context.store, version.content_hash, f"v{version.version}")


@router.get(
    "/asset-versions/{version_id}/files/{path:path}",
    tags=["assets"],
    response_class=StreamingResponse,
    responses=_DOWNLOAD,
)
def download_asset_file(
    version_id: Id, path: str, user: CurrentUser, session: Db, context: Ctx
) -> StreamingResponse:
    """One file of a folder version, by its path in the manifest. Readable by the owner and
    by the studios it was shared with."""
    version = sharing.get_version(session, user.studio_id, version_id)
    entry = outputs.manifest_entry(context.store, version.content_hash, path, version_id)
    return blob_response(context.store, entry, path.rsplit("/", 1)[-1])

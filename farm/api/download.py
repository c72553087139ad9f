"""Blobs served as downloads: frames, previews, contact sheets and asset bytes.

Responses carry the blob's sha256 (``ETag`` and ``X-Content-SHA256``) so the client verifies
what it received, its size (``Content-Length``) and a file name (``Content-Disposition``),
never a path on the farm's disks: the bytes come from whichever store the farm runs on
(disk or S3), streamed in chunks, so a 2 GB frame never sits in the server's memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi.responses import StreamingResponse

from farm.errors import NotFound
from farm.storage import BlobStore

MEDIA_TYPES = {".exr": "image/x-exr", ".png": "image/png", ".json": "application/json"}

DOWNLOAD_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the bytes; ``X-Content-SHA256`` (and the ``ETag``) is their sha256",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
"""The OpenAPI of a download route's 200 answer (bytes, not JSON)."""


def blob_response(store: BlobStore, content_hash: str, file_name: str) -> StreamingResponse:
    """Stream one blob as a file named ``file_name``.

    Raises:
        NotFound: the store lost the blob (the database says it exists): the message says so.
    """
    try:
        size = store.size(content_hash)
    except NotFound as exc:
        raise NotFound(
            f"{file_name}: its bytes ({content_hash}) are missing from the farm's store; ask the "
            "farm's operator (the frame can be rendered again with `farm retry`)"
        ) from exc
    suffix = "." + file_name.rsplit(".", 1)[-1] if "." in file_name else ""
    safe_name = file_name.replace('"', "").replace("\\", "")
    return StreamingResponse(
        _chunks(store, content_hash),
        media_type=MEDIA_TYPES.get(suffix, "application/octet-stream"),
        headers={
            "Content-Length": str(size),
            "ETag": f'"{content_hash}"',
            "X-Content-SHA256": content_hash,
            "Content-Disposition": f'attachment; filename="{safe_name}"',
            "Cache-Control": "private, max-age=31536000, immutable",
        },
    )


def _chunks(store: BlobStore, content_hash: str) -> Iterator[bytes]:
    yield from store.iter_chunks(content_hash)

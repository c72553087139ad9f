"""What a job made, as blobs a studio downloads: each frame's EXR and preview, each layer's
contact sheet. Looked up through the job, so another studio's job is a 404 like a missing one.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from farm import schemas
from farm.db import models as m
from farm.db.queries import frame_file_name, get_job_row
from farm.errors import NotFound
from farm.states import TileState
from farm.storage import BlobStore


def _layer(session: Session, studio_id: int, job_id: int, layer: str) -> m.Layer:
    job = get_job_row(session, studio_id, job_id)
    row = session.scalar(select(m.Layer).where(m.Layer.job_id == job.id, m.Layer.name == layer))
    if row is None:
        names = ", ".join(session.scalars(select(m.Layer.name).where(m.Layer.job_id == job.id)))
        raise NotFound(f"job {job_id} has no layer {layer!r} (its layers: {names})", field="layer")
    return row


def frame_output(
    session: Session,
    studio_id: int,
    job_id: int,
    layer: str,
    number: int,
    output: Literal["exr", "preview"],
) -> tuple[str, str]:
    """The blob of one frame's EXR or preview and the file name to serve it under.

    Raises:
        NotFound: no such job (or another studio's), layer or frame; or the frame has no such
            file yet (the message says what state it is in) or never will (no preview asked).
    """
    row = _layer(session, studio_id, job_id, layer)
    frame = session.scalar(
        select(m.Frame).where(m.Frame.layer_id == row.id, m.Frame.number == number)
    )
    if frame is None:
        raise NotFound(f"layer {layer!r} of job {job_id} has no frame {number}", field="number")
    content_hash = frame.output_hash if output == "exr" else frame.preview_hash
    if content_hash is None:
        if frame.output_hash is not None or frame.state == TileState.DONE:
            why = "this layer writes none (a preview needs an R channel and output.preview)"
        else:
            why = f"the frame is {frame.state}; fetch it once it is done"
        raise NotFound(
            f"frame {number} of layer {layer!r} (job {job_id}) has no {output}: {why}",
            field="number",
        )
    return content_hash, frame_file_name(layer, number, frame.output_path, output)


def tile_log(
    session: Session, studio_id: int, job_id: int, layer: str, number: int, index: int
) -> str | tuple[str]:
    """The blob of a tile's log; for a running tile, ``(text,)``: its log so far.

    Raises:
        NotFound: no such job, layer, frame or tile, or no log yet (the message says why).
    """
    row = _layer(session, studio_id, job_id, layer)
    tile = session.scalar(
        select(m.Tile)
        .join(m.Frame, m.Frame.id == m.Tile.frame_id)
        .where(m.Frame.layer_id == row.id, m.Frame.number == number, m.Tile.index == index)
    )
    if tile is None:
        raise NotFound(
            f"layer {layer!r} of job {job_id} has no tile {index} in frame {number} (yet)",
            field="number",
        )
    if tile.state == TileState.RUNNING:
        from scheduler.executors import livelog

        live = livelog.read(tile.id)
        if live is not None:
            return (live,)
    if tile.log_hash is None:
        raise NotFound(
            f"tile {index} of frame {number} ({layer!r}, job {job_id}) has no log: it is "
            f"{tile.state}; logs are kept for command layers once an attempt ends",
            field="number",
        )
    return tile.log_hash


def contact_sheet(session: Session, studio_id: int, job_id: int, layer: str) -> tuple[str, str]:
    """The blob of a layer's contact sheet (its frames' previews on one page) and its name.

    Raises:
        NotFound: no such job or layer, or no sheet yet (it is made when the job ends).
    """
    row = _layer(session, studio_id, job_id, layer)
    if row.contact_sheet_hash is None:
        raise NotFound(
            f"layer {layer!r} of job {job_id} has no contact sheet: one is made from the "
            "frames' previews when the job ends",
            field="layer",
        )
    return row.contact_sheet_hash, f"job{job_id}_{layer}_contact_sheet.png"


def manifest_entry(store: BlobStore, manifest_hash: str, path: str, version_id: int) -> str:
    """The hash of the file at ``path`` in a folder version's manifest.

    Raises:
        NotFound: the version is a single file, or its manifest has no such path.
    """
    with store.open(manifest_hash) as handle:
        head = handle.read(len(schemas.MANIFEST_MAGIC))
        if head != schemas.MANIFEST_MAGIC:
            raise NotFound(
                f"asset version {version_id} is one file, not a folder: download it whole "
                "(.../content)",
                field="path",
            )
        manifest = schemas.Manifest.from_bytes(head + handle.read())
    entry = manifest.files.get(path)
    if entry is None:
        raise NotFound(f"asset version {version_id} has no file {path!r}", field="path")
    return entry.hash

"""Contact sheets: each assemble layer's frame previews on one page, drawn when its job ends.

Previews are read from the blob store by hash (the node that assembled a frame may be another
machine, and the store may be S3) and the sheet is stored as a blob too, recorded on its layer,
so studios download it through the API. For the embedded farm it is also written beside the
frames, where a local user looks first.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections import defaultdict
from pathlib import Path

from sqlalchemy import select, update

from farm.db import models as m
from farm.db.session import Database
from farm.exr.preview import contact_sheet
from farm.storage import BlobStore
from farm.vocab import LayerKind

log = logging.getLogger(__name__)


def draw_contact_sheets(db: Database, store: BlobStore, job_id: int) -> None:
    """A contact sheet for each assemble layer of the job that has previews. Never raises: a
    sheet is a convenience, and a failed one is logged, not a failed job."""
    with db.session() as session:
        rows = session.execute(
            select(m.Frame.layer_id, m.Frame.number, m.Frame.preview_hash, m.Frame.output_path)
            .join(m.Layer, m.Layer.id == m.Frame.layer_id)
            .where(
                m.Frame.job_id == job_id,
                m.Layer.kind == LayerKind.ASSEMBLE,
                m.Frame.preview_hash.is_not(None),
            )
            .order_by(m.Frame.layer_id, m.Frame.number)
        ).all()
    by_layer: dict[int, list[tuple[int, str, str | None]]] = defaultdict(list)
    for layer_id, number, preview_hash, output_path in rows:
        by_layer[layer_id].append((number, str(preview_hash), output_path))
    for layer_id, previews in by_layer.items():
        try:
            sheet_hash = _draw(store, previews)
        except Exception:
            log.exception("the contact sheet of job %s, layer %s failed", job_id, layer_id)
            continue
        with db.session() as session:
            session.execute(
                update(m.Layer).where(m.Layer.id == layer_id).values(contact_sheet_hash=sheet_hash)
            )


def _draw(store: BlobStore, previews: list[tuple[int, str, str | None]]) -> str:
    with contextlib.ExitStack() as stack:
        paths = [stack.enter_context(store.local_path(h)) for _, h, _ in previews]
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="delta-sheet-")))
        sheet = work / "contact_sheet.png"
        contact_sheet(
            paths,
            sheet,
            columns=min(4, len(paths)),
            labels=[f"frame {number}" for number, _, _ in previews],
        )
        stored = store.put_file(sheet).content_hash
        beside = previews[0][2]
        if beside and Path(beside).parent.is_dir():  # the embedded farm: where the frames are
            with contextlib.suppress(OSError):
                (Path(beside).parent / "contact_sheet.png").write_bytes(sheet.read_bytes())
    return stored

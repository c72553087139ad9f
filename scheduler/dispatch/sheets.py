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
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TypeVar

from sqlalchemy import select, update

from farm.db import models as m
from farm.db.session import Database
from farm.exr.preview import contact_sheet
from farm.storage import BlobStore
from farm.vocab import LayerKind

log = logging.getLogger(__name__)
T = TypeVar("T")


SHEET_FRAMES_MAX = 96
"""Cells of one sheet at most (4 x 24): a longer job's sheet shows frames evenly spaced over
it, the first and the last among them. A 10,000-frame job's every frame would read 10,000
previews and make an image of about 2 GB."""


class SheetDrawer:
    """Draws contact sheets on a thread of its own, one at a time.

    A sheet reads every preview of a job from the store and draws them (seconds for a long
    job); drawn on the dispatcher's thread, it stopped dispatch for every studio meanwhile.
    """

    def __init__(self, db: Database, store: BlobStore) -> None:
        self.db = db
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="farm-sheets")
        self._pending: list[Future[None]] = []

    def draw_later(self, job_id: int) -> None:
        """Queue the sheets of a job that ended."""
        self._pending = [f for f in self._pending if not f.done()]
        self._pending.append(self._pool.submit(draw_contact_sheets, self.db, self.store, job_id))

    def drain(self, timeout_s: float | None = None) -> bool:
        """Wait for the sheets queued so far; whether all were drawn in time."""
        _, not_done = wait(self._pending, timeout=timeout_s)
        return not not_done

    def close(self, timeout_s: float = 10.0) -> None:
        """Draw what is queued (up to ``timeout_s``), then stop the thread."""
        self.drain(timeout_s)
        self._pool.shutdown(wait=False, cancel_futures=True)


def draw_contact_sheets(db: Database, store: BlobStore, job_id: int) -> None:
    """A contact sheet for each assemble layer of the job that has previews (at most
    :data:`SHEET_FRAMES_MAX` frames each). Never raises: a sheet is a convenience, and a
    failed one is logged, not a failed job."""
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
            sheet_hash = _draw(store, spread(previews, SHEET_FRAMES_MAX))
        except Exception:
            log.exception("the contact sheet of job %s, layer %s failed", job_id, layer_id)
            continue
        with db.session() as session:
            session.execute(
                update(m.Layer).where(m.Layer.id == layer_id).values(contact_sheet_hash=sheet_hash)
            )


def spread(items: list[T], most: int) -> list[T]:
    """At most ``most`` of ``items``, evenly spaced, the first and the last included."""
    if len(items) <= most:
        return items
    if most <= 1:
        return items[:most]
    step = (len(items) - 1) / (most - 1)
    return [items[round(i * step)] for i in range(most)]


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

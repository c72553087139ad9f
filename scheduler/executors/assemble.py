"""The assemble executor: crop a frame's tiles back to their rects, write the EXR and a preview.

Runs as soon as one frame's tiles are done (progressive assembly), not after the whole layer.
A tile whose file is missing or corrupt is reported back by id, and the dispatcher re-renders
just that tile: a frame is never written with a hole or with wrong pixels.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from farm.errors import InvalidSpec, NotFound
from farm.exr.assemble import stitch_files
from farm.exr.io import write_exr
from farm.exr.preview import preview_png
from farm.storage import BlobStore
from farm.vocab import Compression, ExrLayout
from scheduler.executors.base import ExecutorOutput, InputTile, TileTask


def run_assemble(task: TileTask, store: BlobStore) -> ExecutorOutput:
    spec = task.layer_spec
    channels = list(task.channels)
    corrupt: list[int] = []
    present: list[tuple[InputTile, Path]] = []
    with contextlib.ExitStack() as stack:
        for tile in task.input_tiles:
            try:
                present.append((tile, stack.enter_context(store.local_path(tile.content_hash))))
            except (NotFound, InvalidSpec):
                corrupt.append(tile.tile_id)  # the blob is gone (or never was): render it again
        if not corrupt:
            frame, unreadable = stitch_files(
                present, width=task.width, height=task.height, channels=channels
            )
            corrupt.extend(present[position][0].tile_id for position, _ in unreadable)
    if corrupt:
        # A frame with a hole is never written: these tiles are rendered again first.
        return ExecutorOutput(output_hash=None, corrupt_input_tiles=tuple(sorted(corrupt)))
    assert task.output_path is not None
    out = Path(task.output_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    output = spec.get("output", {})
    outputs = {"exr": str(out)}
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The preview is drawn while OpenEXR compresses the frame (both release the GIL): the
        # assembly is the one serial step of a tiled frame, so its parts overlap.
        preview = None
        if output.get("preview", True) and "R" in frame:
            preview = pool.submit(preview_png, frame, out.with_suffix(".png"), max_width=960)
            outputs["preview"] = str(out.with_suffix(".png"))
        write_exr(
            out,
            frame,
            width=task.width,
            height=task.height,
            compression=Compression(output.get("compression", Compression.ZIP)),
            layout=ExrLayout(output.get("layout", ExrLayout.SCANLINE)),
            attributes=task.attributes,
            zip_level=int(output.get("zip_level", 1)),
        )
        if preview is not None:
            preview.result()
    # Both files are blobs too: studios download them through the API (``farm fetch``), from
    # any site and whatever the store, never from this node's disk.
    put = store.put_file(out)
    if "preview" in outputs:
        outputs["preview_hash"] = store.put_file(outputs["preview"]).content_hash
    return ExecutorOutput(output_hash=put.content_hash, outputs=outputs)

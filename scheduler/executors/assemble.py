"""The assemble executor: crop a frame's tiles back to their rects, write the EXR and a preview.

Runs as soon as one frame's tiles are done (progressive assembly), not after the whole layer.
A tile whose file is missing or corrupt is reported back by id, and the dispatcher re-renders
just that tile: a frame is never written with a hole or with wrong pixels.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from farm.errors import NotFound
from farm.exr.assemble import TileCorrupt, assemble_frame, read_tile
from farm.exr.io import write_exr
from farm.exr.preview import preview_png
from farm.storage import BlobStore
from farm.vocab import Compression, ExrLayout
from scheduler.executors.base import ExecutorOutput, TileTask


def run_assemble(task: TileTask, store: BlobStore) -> ExecutorOutput:
    spec = task.layer_spec
    channels = list(task.channels)
    corrupt: list[int] = []
    pieces: list[tuple[object, dict[str, np.ndarray]]] = []
    with contextlib.ExitStack() as stack:
        for tile in task.input_tiles:
            try:
                path = stack.enter_context(store.local_path(tile.content_hash))
                pixels = read_tile(path, expect_rect=tile.render_rect, expect_channels=channels)
            except (TileCorrupt, NotFound, OSError):
                # A missing blob, an unreadable file or a tile of the wrong window all mean
                # "render this tile again", never "write the frame anyway".
                corrupt.append(tile.tile_id)
                continue
            pieces.append((tile, pixels))
    if corrupt:
        return ExecutorOutput(output_hash=None, corrupt_input_tiles=tuple(corrupt))
    frame = assemble_frame(pieces, width=task.width, height=task.height, channels=channels)  # type: ignore[arg-type]
    assert task.output_path is not None
    out = Path(task.output_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    output = spec.get("output", {})
    write_exr(
        out,
        frame,
        width=task.width,
        height=task.height,
        compression=Compression(output.get("compression", Compression.ZIP)),
        layout=ExrLayout(output.get("layout", ExrLayout.SCANLINE)),
        attributes=task.attributes,
    )
    outputs = {"exr": str(out)}
    if output.get("preview", True) and "R" in frame:
        preview = out.with_suffix(".png")
        preview_png(frame, preview, max_width=960)
        outputs["preview"] = str(preview)
    put = store.put_file(out)
    return ExecutorOutput(output_hash=put.content_hash, outputs=outputs)

"""Tile files and frame assembly: crop each tile's overscan away and stitch the frame.

A tile's executor writes its render rect (owned pixels plus overscan) with :func:`write_tile`;
the assemble layer reads every tile back with :func:`read_tile`, crops it to the pixels it owns
and writes one frame. Tile files are uncompressed: they live minutes, are read once, and
decompressing 64 of them would cost more than the disk they save.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np

from farm.errors import InvalidSpec
from farm.exr.io import CHANNEL_DTYPES, StrPath, read_exr, write_exr
from farm.vocab import Compression, ExrLayout, PixelRect

__all__ = [
    "TileCorrupt",
    "TileLike",
    "assemble_files",
    "assemble_frame",
    "read_tile",
    "write_tile",
]


TILE_FILE_TILE_SIZE = 512
"""EXR tile edge of tile files. Uncompressed scanline files are read one line per chunk, which
made reading a 4K frame's 64 tile files cost 0.4 s; 512 px tiles read about 6x faster."""


class TileCorrupt(InvalidSpec):
    """A tile's file is missing, unreadable, of another window or lacks channels.

    The dispatcher retries the tile that wrote it; nothing else about the frame is wrong.

    Attributes:
        path: the tile file, as given.
    """

    def __init__(self, message: str, *, path: StrPath) -> None:
        super().__init__(message, field="tile")
        self.path = str(path)


class TileLike(Protocol):
    """What assembly needs of a tile: ``scheduler.tiles.PlannedTile`` fits (farm must not
    import scheduler, so this is structural)."""

    @property
    def rect(self) -> PixelRect: ...

    @property
    def render_rect(self) -> PixelRect: ...


def write_tile(
    path: StrPath,
    channels: Mapping[str, np.ndarray],
    *,
    render_rect: PixelRect,
    width: int,
    height: int,
    attributes: Mapping[str, str | int | float] | None = None,
    atomic: bool = True,
) -> None:
    """Writes a tile's intermediate file: an uncompressed EXR whose data window is the render rect.

    Uncompressed and stored as large EXR tiles (:data:`TILE_FILE_TILE_SIZE`), because assembly
    reads every tile file once and is timed against a single frame write.

    The data window records where the tile sits in the frame, which renderers that crop to a
    border lose (Blender writes such crops at (0, 0)); the write is atomic, so a half-written
    tile never looks finished (``atomic=False``: a scratch file the store adopts, see
    :func:`farm.exr.io.write_exr`).

    Raises:
        InvalidSpec: when an array does not match the render rect's size.
    """
    write_exr(
        path,
        channels,
        width=width,
        height=height,
        data_window=render_rect,
        compression=Compression.NONE,
        layout=ExrLayout.TILED,
        tile_size=TILE_FILE_TILE_SIZE,
        attributes=attributes,
        atomic=atomic,
    )


def read_tile(
    path: StrPath, *, expect_rect: PixelRect, expect_channels: Iterable[str]
) -> dict[str, np.ndarray]:
    """Reads a tile file back and checks it is the tile the plan expects.

    Args:
        path: the tile file.
        expect_rect: the tile's render rect, which must be the file's data window.
        expect_channels: channels the tile must hold; other channels in the file are ignored.

    Returns:
        Channel name -> array of the render rect's size, for the expected channels only.

    Raises:
        TileCorrupt: naming the file, when it is missing, unreadable, has another data window
            or lacks a channel: the dispatcher retries that tile.
    """
    try:
        image = read_exr(path)
    except InvalidSpec as exc:
        raise TileCorrupt(f"tile file {exc.message}", path=path) from exc
    if image.data_window != expect_rect:
        raise TileCorrupt(
            f"tile file {path}: data window {image.data_window.as_tuple()} is not the "
            f"expected render rect {expect_rect.as_tuple()}: render the tile again",
            path=path,
        )
    wanted = list(expect_channels)
    missing = [c for c in wanted if c not in image.channels]
    if missing:
        raise TileCorrupt(
            f"tile file {path}: missing channels {', '.join(missing)} (has "
            f"{', '.join(sorted(image.channels))}): render the tile again",
            path=path,
        )
    return {c: image.channels[c] for c in wanted}


def _coverage_error(rects: Sequence[PixelRect], width: int, height: int) -> str | None:
    """Says why ``rects`` do not cover the frame exactly once, or None when they do.

    Cheap on the happy path: a covered union with a total area of exactly one frame means no
    gaps and no overlaps, found with one boolean mask. Only a failure pays for counting.
    """
    frame = PixelRect(x0=0, y0=0, x1=width, y1=height)
    for r in rects:
        if not frame.contains(r):
            return f"tile {r.as_tuple()} leaves the {width}x{height} frame"
    covered = np.zeros((height, width), dtype=bool)
    for r in rects:
        covered[r.y0 : r.y1, r.x0 : r.x1] = True
    if covered.all() and sum(r.area for r in rects) == width * height:
        return None
    count = np.zeros((height, width), dtype=np.int32)
    for r in rects:
        count[r.y0 : r.y1, r.x0 : r.x1] += 1
    y, x = divmod(int(np.flatnonzero(count != 1)[0]), width)
    n = int(count[y, x])
    return f"pixel (x={x}, y={y}) is {'not covered by any tile' if n == 0 else f'in {n} tiles'}"


class _FrameStitcher:
    """Full-frame arrays being filled tile by tile; safe to feed from several threads.

    Tiles own disjoint rects, so concurrent copies never touch the same pixels; only the lazy
    allocation of a channel's array needs the lock.
    """

    def __init__(self, *, width: int, height: int, channels: Sequence[str]) -> None:
        self.width, self.height, self.channels = width, height, list(channels)
        self.out: dict[str, np.ndarray] = {}
        self.rects: list[PixelRect] = []
        self._lock = threading.Lock()

    def _array(self, name: str, like: np.ndarray) -> np.ndarray:
        dst = self.out.get(name)
        if dst is None:
            with self._lock:
                dst = self.out.get(name)
                if dst is None:
                    dtype = CHANNEL_DTYPES.get(name, like.dtype)
                    dst = self.out[name] = np.empty((self.height, self.width), dtype)
        return dst

    def add(self, tile: TileLike, pixels: Mapping[str, np.ndarray]) -> None:
        """Copies the owned part of one tile into the frame: the only copy of its pixels."""
        rect, render = tile.rect, tile.render_rect
        if not render.contains(rect):
            raise InvalidSpec(
                f"tile {rect.as_tuple()}: render rect {render.as_tuple()} does not contain it",
                field="tiles",
            )
        crop = rect.slices_within(render)
        for name in self.channels:
            src = pixels.get(name)
            if src is None:
                raise InvalidSpec(f"tile {rect.as_tuple()} has no channel {name!r}", field="tiles")
            if src.shape != (render.height, render.width):
                raise InvalidSpec(
                    f"tile {rect.as_tuple()}: channel {name!r} has shape {src.shape}, "
                    f"its render rect needs {(render.height, render.width)}",
                    field="tiles",
                )
            self._array(name, src)[rect.y0 : rect.y1, rect.x0 : rect.x1] = src[crop]
        self.rects.append(rect)

    def finish(self) -> dict[str, np.ndarray]:
        """The frame, once the tiles are known to cover it exactly once."""
        why = _coverage_error(self.rects, self.width, self.height)
        if why is not None:
            raise InvalidSpec(f"tiles do not cover the frame exactly once: {why}", field="tiles")
        return self.out


def assemble_frame(
    tiles: Iterable[tuple[TileLike, Mapping[str, np.ndarray]]],
    *,
    width: int,
    height: int,
    channels: Sequence[str],
) -> dict[str, np.ndarray]:
    """Crops each tile's overscan back to its rect and stitches full-frame arrays.

    ``tiles`` may be a generator: each tile's pixels are copied once, straight into the
    preallocated frame, and can be freed before the next tile is read.

    Args:
        tiles: ``(tile, pixels)`` pairs; ``pixels[c]`` covers ``tile.render_rect``.
        width: frame width.
        height: frame height.
        channels: the channels of the frame, in file order.

    Returns:
        Channel name -> ``(height, width)`` array, typed as :data:`CHANNEL_DTYPES` says (other
        channels keep the first tile's type).

    Raises:
        InvalidSpec: (field ``tiles``) when a tile lacks a channel or has the wrong size, or
            the tiles' rects do not cover the frame exactly once.
    """
    stitcher = _FrameStitcher(width=width, height=height, channels=channels)
    for tile, pixels in tiles:
        stitcher.add(tile, pixels)
    return stitcher.finish()


def stitch_files(
    tile_files: Sequence[tuple[TileLike, StrPath]],
    *,
    width: int,
    height: int,
    channels: Sequence[str],
) -> tuple[dict[str, np.ndarray], list[tuple[int, TileCorrupt]]]:
    """Reads every tile file and stitches the frame, on one thread per core.

    OpenEXR and NumPy release the GIL while reading and copying, so reading 64 tiles overlaps
    with copying them into preallocated frame arrays.

    Returns:
        The frame's channels, and ``(position in tile_files, error)`` for every tile whose file
        was missing or wrong. When that list is not empty the frame has holes: never write it,
        render those tiles again.
    """
    stitcher = _FrameStitcher(width=width, height=height, channels=channels)
    corrupt: list[tuple[int, TileCorrupt]] = []

    def read_and_add(position: int, tile: TileLike, path: StrPath) -> None:
        try:
            pixels = read_tile(
                path, expect_rect=tile.render_rect, expect_channels=stitcher.channels
            )
        except TileCorrupt as exc:
            corrupt.append((position, exc))
            return
        stitcher.add(tile, pixels)

    workers = max(1, min(os.cpu_count() or 1, len(tile_files)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="assemble") as pool:
        for future in [
            pool.submit(read_and_add, i, tile, path) for i, (tile, path) in enumerate(tile_files)
        ]:
            future.result()
    corrupt.sort(key=lambda item: item[0])
    if corrupt:
        return {}, corrupt
    return stitcher.finish(), corrupt


def assemble_files(
    tile_files: Sequence[tuple[TileLike, StrPath]],
    out_path: StrPath,
    *,
    width: int,
    height: int,
    channels: Sequence[str],
    compression: Compression = Compression.ZIP,
    layout: ExrLayout = ExrLayout.SCANLINE,
    attributes: Mapping[str, str | int | float] | None = None,
) -> None:
    """Reads every tile file, assembles the frame and writes it atomically.

    Tiles are read and stitched on one thread per core (OpenEXR and NumPy release the GIL
    while reading and copying), so reading 64 tiles overlaps with copying them. The caller
    records the job, layer, frame, renderer and tile plan in ``attributes`` (``delta/job``,
    ..., ``delta/tile_plan`` as the plan's JSON string).

    Raises:
        TileCorrupt: for the first (in plan order) tile file that is missing or wrong;
            nothing is written then.
        InvalidSpec: when the tiles do not cover the frame exactly once.
    """
    frame, corrupt = stitch_files(tile_files, width=width, height=height, channels=channels)
    if corrupt:
        raise corrupt[0][1]
    write_exr(
        out_path,
        frame,
        width=width,
        height=height,
        compression=compression,
        layout=layout,
        attributes=attributes,
    )

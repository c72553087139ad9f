"""Tile files and frame assembly: crop each tile's overscan away and stitch the frame.

A tile's executor writes its render rect (owned pixels plus overscan) with :func:`write_tile`;
the assemble layer reads every tile back with :func:`read_tile`, crops it to the pixels it owns
and writes one frame. Tile files are uncompressed: they live minutes, are read once, and
decompressing 64 of them would cost more than the disk they save.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

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
) -> None:
    """Writes a tile's intermediate file: an uncompressed EXR whose data window is the render rect.

    The data window records where the tile sits in the frame, which renderers that crop to a
    border lose (Blender writes such crops at (0, 0)); the write is atomic, so a half-written
    tile never looks finished.

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
        attributes=attributes,
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
    out: dict[str, np.ndarray] = {}
    rects: list[PixelRect] = []
    for tile, pixels in tiles:
        rect, render = tile.rect, tile.render_rect
        if not render.contains(rect):
            raise InvalidSpec(
                f"tile {rect.as_tuple()}: render rect {render.as_tuple()} does not contain it",
                field="tiles",
            )
        crop = rect.slices_within(render)
        for name in channels:
            src = pixels.get(name)
            if src is None:
                raise InvalidSpec(f"tile {rect.as_tuple()} has no channel {name!r}", field="tiles")
            if src.shape != (render.height, render.width):
                raise InvalidSpec(
                    f"tile {rect.as_tuple()}: channel {name!r} has shape {src.shape}, "
                    f"its render rect needs {(render.height, render.width)}",
                    field="tiles",
                )
            dst = out.get(name)
            if dst is None:
                dst = out[name] = np.empty((height, width), CHANNEL_DTYPES.get(name, src.dtype))
            dst[rect.y0 : rect.y1, rect.x0 : rect.x1] = src[crop]
        rects.append(rect)
    why = _coverage_error(rects, width, height)
    if why is not None:
        raise InvalidSpec(f"tiles do not cover the frame exactly once: {why}", field="tiles")
    return out


def assemble_files(
    tile_files: Sequence[tuple[TileLike, StrPath]],
    out_path: StrPath,
    *,
    width: int,
    height: int,
    channels: Sequence[str],
    compression: Compression = Compression.ZIP,
    layout: ExrLayout = ExrLayout.SCANLINE,
    attributes: Mapping[str, Any] | None = None,
) -> None:
    """Reads every tile file, assembles the frame and writes it atomically.

    The caller records the job, layer, frame, renderer and tile plan in ``attributes``
    (``delta/job``, ..., ``delta/tile_plan`` as the plan's JSON string).

    Raises:
        TileCorrupt: when a tile file is missing or wrong; nothing is written then.
        InvalidSpec: when the tiles do not cover the frame exactly once.
    """
    wanted = list(channels)
    frame = assemble_frame(
        (
            (tile, read_tile(path, expect_rect=tile.render_rect, expect_channels=wanted))
            for tile, path in tile_files
        ),
        width=width,
        height=height,
        channels=wanted,
    )
    write_exr(
        out_path,
        frame,
        width=width,
        height=height,
        compression=compression,
        layout=layout,
        attributes=attributes,
    )

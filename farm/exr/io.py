"""Writing and reading OpenEXR files with the farm's channel types, atomically.

Every EXR the farm writes goes through :func:`write_exr`, so the pitfalls of the OpenEXR 3.x
bindings are handled once (see ``shared/NOTES.md``): pixel types follow numpy dtypes, arrays must
be contiguous, ``File()`` mutates the dicts it is given, compression must be the enum, header
floats are 32-bit and ints over 32 bits silently become 0, and only the global thread count
matters.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import OpenEXR

from farm.errors import InvalidSpec
from farm.vocab import Compression, ExrLayout, PixelRect

__all__ = [
    "ATTRIBUTE_PREFIX",
    "CHANNEL_DTYPES",
    "ExrImage",
    "atomic_output",
    "read_exr",
    "write_exr",
]

StrPath = str | os.PathLike[str]

CHANNEL_DTYPES: dict[str, np.dtype[Any]] = {
    "R": np.dtype(np.float16),
    "G": np.dtype(np.float16),
    "B": np.dtype(np.float16),
    "A": np.dtype(np.float16),
    "Z": np.dtype(np.float32),
    "velocity.X": np.dtype(np.float32),
    "velocity.Y": np.dtype(np.float32),
    "id": np.dtype(np.uint32),
}
"""Pixel type of each AOV channel: colour is half (plenty for display-referred review and half
the bytes), depth and motion need float precision, ids are exact integers."""

_EXR_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.uint32))
"""The only pixel types OpenEXR has (HALF, FLOAT, UINT)."""

ATTRIBUTE_PREFIX = "delta/"
"""Namespace of the farm's own header attributes, so they never clash with standard ones."""

_COMPRESSIONS: dict[Compression, OpenEXR.Compression] = {
    Compression.NONE: OpenEXR.NO_COMPRESSION,
    Compression.ZIP: OpenEXR.ZIP_COMPRESSION,
    Compression.ZIPS: OpenEXR.ZIPS_COMPRESSION,
    Compression.PIZ: OpenEXR.PIZ_COMPRESSION,
    Compression.DWAA: OpenEXR.DWAA_COMPRESSION,
    Compression.DWAB: OpenEXR.DWAB_COMPRESSION,
}

_STRUCTURAL = {"channels", "compression", "dataWindow", "displayWindow", "type", "tiles"}
"""Header keys that :class:`ExrImage` exposes as fields rather than as attributes."""

_threads_set = False
_zip_lock = threading.Lock()


@functools.cache
def _zip_api() -> Any:
    """OpenEXR's C API in the bindings' library, or None (then frames are written at the
    library's default level, and a warning says so once)."""
    try:
        lib = ctypes.CDLL(OpenEXR.__file__)
        lib.exr_set_default_zip_compression_level  # noqa: B018 (a lookup that may fail)
        lib.exr_get_default_zip_compression_level  # noqa: B018
    except (OSError, AttributeError) as exc:
        logging.getLogger(__name__).warning(
            "this OpenEXR does not export its zip level setting (%s): frames are written at "
            "its default level",
            exc,
        )
        return None
    return lib


@contextlib.contextmanager
def _zip_level(level: int | None) -> Iterator[None]:
    """OpenEXR's zlib level for the writes inside the block (None: the library's default).

    The Python bindings take no level (a ``zipCompressionLevel`` header key is stored as a
    plain attribute and ignored), so it is set through OpenEXR's C API, exported by the
    bindings' own library: a process-wide default, set and restored under a lock.
    """
    lib = _zip_api()
    if level is None or lib is None:
        yield
        return
    with _zip_lock:
        before = ctypes.c_int(0)
        lib.exr_get_default_zip_compression_level(ctypes.byref(before))
        lib.exr_set_default_zip_compression_level(ctypes.c_int(level))
        try:
            yield
        finally:
            lib.exr_set_default_zip_compression_level(before)


def _ensure_threads() -> None:
    """Sets OpenEXR's global thread count once: per-file thread counts do nothing (NOTES.md),
    and without it a 4K ZIP write takes about twice as long."""
    global _threads_set
    if not _threads_set:
        OpenEXR.set_global_thread_count(os.cpu_count() or 1)
        _threads_set = True


@contextlib.contextmanager
def atomic_output(path: StrPath, *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yields a temporary path beside ``path``; on success it is fsynced and renamed over ``path``.

    Readers (the assembler, previews, a studio's download) must never see a half-written file,
    and a crash must not leave one behind: on any error the temporary file is removed and the
    target is left untouched. The temporary file sits in the same directory so that
    ``os.replace`` is an atomic rename on the same file system.
    """
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o644)  # mkstemp makes it 0600; frames are read by other users of the farm
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # The rename itself is durable only once the directory entry is synced.
    with contextlib.suppress(OSError):
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _exr_pixels(name: str, array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The array as OpenEXR needs it: the channel's dtype, C-contiguous, checked shape."""
    arr = np.asarray(array)
    if arr.shape != shape:
        raise InvalidSpec(
            f"channel {name!r} has shape {arr.shape}, but the data window needs "
            f"{shape} (height, width)",
            field="channels",
        )
    dtype = CHANNEL_DTYPES.get(name)
    if dtype is None:
        if arr.dtype not in _EXR_DTYPES:
            raise InvalidSpec(
                f"channel {name!r} has dtype {arr.dtype}: EXR channels other than "
                f"{', '.join(CHANNEL_DTYPES)} must be float16, float32 or uint32",
                field="channels",
            )
        dtype = arr.dtype
    # No copy when the array already has the right type and layout (the usual case).
    return np.ascontiguousarray(arr, dtype=dtype)


def _attribute(name: str, value: object) -> tuple[str, str | int | float]:
    key = name if name.startswith(ATTRIBUTE_PREFIX) else ATTRIBUTE_PREFIX + name
    if isinstance(value, np.generic):
        value = value.item()  # a numpy scalar in a header raises inside the bindings
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        if not -(2**31) <= value < 2**31:
            # The bindings store ints as 32-bit and silently write 0 for larger ones.
            raise InvalidSpec(
                f"attribute {key!r} = {value} does not fit 32 bits: pass it as a string",
                field="attributes",
            )
        return key, value
    if isinstance(value, float | str):
        return key, value
    raise InvalidSpec(
        f"attribute {key!r} has type {type(value).__name__}: use str, int or float "
        "(JSON-encode structures into a string)",
        field="attributes",
    )


def write_exr(
    path: StrPath,
    channels: Mapping[str, np.ndarray],
    *,
    width: int,
    height: int,
    data_window: PixelRect | None = None,
    compression: Compression = Compression.ZIP,
    layout: ExrLayout = ExrLayout.SCANLINE,
    tile_size: int = 64,
    attributes: Mapping[str, str | int | float] | None = None,
    atomic: bool = True,
    zip_level: int | None = None,
) -> None:
    """Writes one EXR file atomically: readers see the old file or the whole new one, never half.

    Args:
        path: the target file; its directory must exist.
        channels: channel name -> 2-D array of the data window's size. Known AOV channels are
            cast to their :data:`CHANNEL_DTYPES` type; other names must already be float16,
            float32 or uint32.
        width: display window width (the full frame).
        height: display window height.
        data_window: the pixels stored (a tile's render rect); defaults to the full frame.
        compression: ZIP by default, since every reader here (Debian's exr tools, OIIO 2.4,
            Blender 3.4) opens it; ZSTD/HTJ2K are deliberately not offered.
        layout: scanline or tiled storage.
        tile_size: tile edge in pixels for the tiled layout.
        attributes: extra header attributes; names get the ``delta/`` prefix when missing.
            Floats are stored as 32-bit.
        atomic: False writes straight to ``path``, unflushed: for a scratch file its writer
            hands to the store (``BlobStore.adopt_file``), which flushes it once and makes
            it visible by a rename, so the file is not flushed twice.
        zip_level: zlib level (1-9) of a ZIP or ZIPS file; None: OpenEXR's default (4).

    Raises:
        InvalidSpec: when a channel has the wrong shape or an unsupported dtype, an attribute
            cannot be stored faithfully, or the data window leaves the frame. No file is left.
    """
    _ensure_threads()
    frame = PixelRect(x0=0, y0=0, x1=width, y1=height)
    window = data_window or frame
    if not frame.contains(window):
        raise InvalidSpec(
            f"data window {window.as_tuple()} leaves the {width}x{height} frame",
            field="data_window",
        )
    if not channels:
        raise InvalidSpec("no channels to write: pass at least one", field="channels")
    shape = (window.height, window.width)
    # Fresh dicts every time: File() mutates the header and channel dicts it is given.
    pixels = {name: _exr_pixels(name, arr, shape) for name, arr in channels.items()}
    header: dict[str, Any] = {
        "compression": _COMPRESSIONS[Compression(compression)],
        "dataWindow": ((window.x0, window.y0), (window.x1 - 1, window.y1 - 1)),
        "displayWindow": ((0, 0), (width - 1, height - 1)),
    }
    if ExrLayout(layout) is ExrLayout.TILED:
        td = OpenEXR.TileDescription()
        td.xSize = td.ySize = tile_size
        td.mode = OpenEXR.ONE_LEVEL
        header["type"] = OpenEXR.tiledimage
        header["tiles"] = td
    else:
        header["type"] = OpenEXR.scanlineimage
    header.update(_attribute(k, v) for k, v in (attributes or {}).items())
    if zip_level is not None and not 1 <= zip_level <= 9:
        raise InvalidSpec(f"zip level {zip_level} is not 1 to 9", field="zip_level")
    with _zip_level(zip_level):
        if not atomic:
            OpenEXR.File(header, pixels).write(str(path))
            return
        with atomic_output(path, suffix=".exr") as tmp:
            OpenEXR.File(header, pixels).write(str(tmp))


@dataclass
class ExrImage:
    """An EXR file read back into memory.

    Attributes:
        channels: channel name -> array of the data window's size, in the file's pixel type.
        width: display window width.
        height: display window height.
        data_window: the stored pixels, in display window coordinates.
        attributes: header attributes other than the structural ones above (the farm's own
            carry the ``delta/`` prefix).
        compression: the compression's name in :class:`Compression` spelling (``"zip"``), or
            the OpenEXR enum name for kinds the farm does not write.
        layout: scanline or tiled.
    """

    channels: dict[str, np.ndarray]
    width: int
    height: int
    data_window: PixelRect
    attributes: dict[str, object]
    compression: str
    layout: ExrLayout = ExrLayout.SCANLINE


def _not_readable(path: StrPath, why: object) -> InvalidSpec:
    return InvalidSpec(
        f"{path}: not a readable OpenEXR file ({why}); it is missing, truncated or corrupt: "
        "render or write it again",
        field="path",
    )


def _owned(array: np.ndarray) -> np.ndarray:
    # Leaving the with-block empties the binding's dict (NOTES.md). Arrays that own their
    # memory survive that (checked with OpenEXR 3.5); copy only if a binding ever hands out views.
    return array if array.flags.owndata else array.copy()


def _box(window: Any) -> tuple[int, int, int, int]:
    (x0, y0), (x1, y1) = window
    return int(x0), int(y0), int(x1), int(y1)


def read_exr(path: StrPath) -> ExrImage:
    """Reads a whole EXR file (every channel, separately: never merged into ``"RGBA"``).

    Raises:
        InvalidSpec: (field ``path``) when the file is missing, truncated or not an EXR file,
            or its data window lies outside the display window's positive quadrant.
    """
    _ensure_threads()
    if not os.path.isfile(path):
        raise _not_readable(path, "no such file")
    try:
        with OpenEXR.File(str(path), separate_channels=True) as f:
            header = dict(f.header())  # emptied on leaving the block, like the channels
            channels = {name: _owned(ch.pixels) for name, ch in f.channels().items()}
    except Exception as exc:  # the bindings raise RuntimeError or ValueError ("0 parts")
        raise _not_readable(path, exc) from exc
    dx0, dy0, dx1, dy1 = _box(header["displayWindow"])
    x0, y0, x1, y1 = _box(header["dataWindow"])
    try:
        window = PixelRect(x0=x0 - dx0, y0=y0 - dy0, x1=x1 - dx0 + 1, y1=y1 - dy0 + 1)
    except ValueError as exc:
        raise _not_readable(path, f"data window {(x0, y0, x1, y1)} not supported") from exc
    compression = header["compression"]
    names = {v: k.value for k, v in _COMPRESSIONS.items()}
    layout = ExrLayout.TILED if header.get("type") == OpenEXR.tiledimage else ExrLayout.SCANLINE
    return ExrImage(
        channels=channels,
        width=dx1 - dx0 + 1,
        height=dy1 - dy0 + 1,
        data_window=window,
        attributes={k: v for k, v in header.items() if k not in _STRUCTURAL},
        compression=names.get(compression, getattr(compression, "name", str(compression))),
        layout=layout,
    )

"""Particle caches: the in-memory frame, its validation, spatial ordering and the on-disk file.

File layout (little-endian; every array starts on a 64-byte boundary so reads can ``np.memmap``)::

    b"DELTAPC\\0" | u32 version | u32 0 | ...arrays... | JSON index
    | u64 index_offset | u64 index_len | b"DELTAEND"

The index sits at the end so :func:`write_cache` can stream frames from a generator without
holding them all; a missing trailer means the file is truncated (or not a cache).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from farm.errors import InvalidSpec

MAGIC = b"DELTAPC\0"
END_MAGIC = b"DELTAEND"
VERSION = 1
_ALIGN = 64
_TRAILER = struct.Struct("<QQ8s")

# Field name -> (dtype, trailing shape). The order is the file order.
FIELDS: dict[str, tuple[np.dtype[Any], tuple[int, ...]]] = {
    "position": (np.dtype("<f4"), (3,)),
    "velocity": (np.dtype("<f4"), (3,)),
    "radius": (np.dtype("<f4"), ()),
    "colour": (np.dtype("<f4"), (4,)),
    "id": (np.dtype("<u4"), ()),
}
EMPTY_ID = 0xFFFFFFFF
"""Not allowed as a particle id: ``id + 1`` would wrap to 0, which the ``id`` AOV means empty."""


@dataclass(frozen=True, eq=False)
class ChunkIndex:
    """Per-chunk bounds so a tile can skip chunks that cannot touch it.

    Chunk ``i`` holds particles ``[i * chunk_size, min(count, (i + 1) * chunk_size))``.

    Attributes:
        chunk_size: particles per chunk (the last may hold fewer).
        lo: float32 ``(C, 3)`` minimum corner of the chunk's particle centres.
        hi: float32 ``(C, 3)`` maximum corner of the centres.
        max_radius: float32 ``(C,)`` largest world radius in the chunk.
    """

    chunk_size: int
    lo: np.ndarray
    hi: np.ndarray
    max_radius: np.ndarray

    @property
    def count(self) -> int:
        """Number of chunks."""
        return int(self.max_radius.shape[0])


@dataclass(frozen=True, eq=False)
class ParticleFrame:
    """One frame of particles, as arrays of equal length ``N`` (structure of arrays).

    Attributes:
        frame: frame number.
        position: float32 ``(N, 3)`` world units.
        velocity: float32 ``(N, 3)`` world units per frame.
        radius: float32 ``(N,)`` world units, >= 0.
        colour: float32 ``(N, 4)`` straight RGB (>= 0, may exceed 1) and opacity in ``[0, 1]``.
        id: uint32 ``(N,)`` unique per particle and stable across frames;
            ``0xFFFFFFFF`` is reserved.
        chunks: optional spatial index from :func:`prepare_frame`.
    """

    frame: int
    position: np.ndarray
    velocity: np.ndarray
    radius: np.ndarray
    colour: np.ndarray
    id: np.ndarray
    chunks: ChunkIndex | None = field(default=None)

    @property
    def count(self) -> int:
        """Number of particles."""
        return int(self.id.shape[0])


def _bad(pf: ParticleFrame, name: str, what: str) -> InvalidSpec:
    return InvalidSpec(f"particle cache frame {pf.frame}: {what}", field=name)


def _first_bad_row(mask: np.ndarray) -> int:
    rows = mask.reshape(mask.shape[0], -1).any(axis=1)
    return int(np.argmax(rows))


def validate_frame(pf: ParticleFrame) -> None:
    """Check a frame once, before the farm sends tiles, so renderers can trust it.

    Args:
        pf: the frame to check.

    Raises:
        InvalidSpec: naming the field and the first bad index: wrong shape or dtype, arrays of
            different lengths, NaN or infinite values, negative radius or colour, opacity outside
            ``[0, 1]``, a reserved or duplicated id, or a chunk index that does not fit.
    """
    n = pf.id.shape[0] if getattr(pf.id, "ndim", 0) == 1 else None
    for name, (dtype, tail) in FIELDS.items():
        arr = getattr(pf, name)
        if not isinstance(arr, np.ndarray):
            raise _bad(pf, name, f"{name} is {type(arr).__name__}, expected a numpy array")
        if arr.ndim != 1 + len(tail) or arr.shape[1:] != tail:
            want = "(N" + "".join(f", {t}" for t in tail) + ")"
            raise _bad(pf, name, f"{name} has shape {arr.shape}, expected {want}")
        if arr.dtype != dtype:
            raise _bad(pf, name, f"{name} has dtype {arr.dtype}, expected {dtype.name}")
        if n is not None and arr.shape[0] != n:
            raise _bad(
                pf,
                name,
                f"{name} has {arr.shape[0]} rows but id has {n}; every array needs one row per "
                "particle",
            )
    for name in ("position", "velocity", "radius", "colour"):
        arr = getattr(pf, name)
        finite = np.isfinite(arr)
        if not finite.all():
            i = _first_bad_row(~finite)
            kind = "NaN" if np.isnan(arr[i]).any() else "infinite"
            raise _bad(pf, name, f"{name}[{i}] is {kind}; every {name} must be finite")
    if (pf.radius < 0).any():
        i = int(np.argmax(pf.radius < 0))
        raise _bad(pf, "radius", f"radius[{i}] is {pf.radius[i]}; every radius must be >= 0")
    rgb_bad = pf.colour[:, :3] < 0
    if rgb_bad.any():
        i = _first_bad_row(rgb_bad)
        raise _bad(pf, "colour", f"colour[{i}] has negative RGB {pf.colour[i, :3].tolist()}")
    op = pf.colour[:, 3]
    op_bad = (op < 0) | (op > 1)
    if op_bad.any():
        i = int(np.argmax(op_bad))
        raise _bad(pf, "colour", f"colour[{i}] has opacity {op[i]}; opacity must be in [0, 1]")
    _validate_ids(pf)
    _validate_chunks(pf)


def _validate_ids(pf: ParticleFrame) -> None:
    reserved = pf.id == EMPTY_ID
    if reserved.any():
        i = int(np.argmax(reserved))
        raise _bad(pf, "id", f"id[{i}] is 0xFFFFFFFF, which is reserved; ids must be < 2**32 - 1")
    if pf.count < 2:
        return
    # Ids are usually 0..N-1 (any order): counting them is O(N), a sort is not.
    if int(pf.id.max()) < 4 * pf.count + 1024 and int(np.bincount(pf.id).max()) <= 1:
        return
    order = np.argsort(pf.id, kind="stable")
    dup = pf.id[order[1:]] == pf.id[order[:-1]]
    if dup.any():
        later = order[1:][dup]
        i = int(later.min())
        raise _bad(pf, "id", f"id[{i}] = {pf.id[i]} repeats an earlier id; ids must be unique")


def _validate_chunks(pf: ParticleFrame) -> None:
    ch = pf.chunks
    if ch is None:
        return
    want = -(-pf.count // ch.chunk_size) if ch.chunk_size > 0 else -1
    shapes_ok = ch.lo.shape == (want, 3) and ch.hi.shape == (want, 3)
    if ch.chunk_size <= 0 or not shapes_ok or ch.max_radius.shape != (want,):
        raise _bad(pf, "chunks", f"chunk index does not fit {pf.count} particles; re-run prepare")


def _morton_codes(position: np.ndarray) -> np.ndarray:
    """30-bit Morton (Z-order) codes of positions quantised to 1024 steps per axis (uint32)."""
    pos = np.nan_to_num(position.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo = pos.min(axis=0)
    span = np.maximum(pos.max(axis=0) - lo, 1e-30)
    q = np.clip(((pos - lo) / span * 1023.0).astype(np.int64), 0, 1023)
    return _spread3(q[:, 0]) | (_spread3(q[:, 1]) << 1) | (_spread3(q[:, 2]) << 2)


def _spread3(v: np.ndarray) -> np.ndarray:
    """10-bit values with two zero bits after each bit (``b9..b0`` -> ``b9 0 0 ... b0``): four
    shift-and-mask steps instead of a loop over the 30 bits (a frame's codes 0.55 -> 0.32 s)."""
    v = v.astype(np.uint32)
    v = (v | (v << 16)) & np.uint32(0x030000FF)
    v = (v | (v << 8)) & np.uint32(0x0300F00F)
    v = (v | (v << 4)) & np.uint32(0x030C30C3)
    return (v | (v << 2)) & np.uint32(0x09249249)


def _stable_order(code: np.ndarray) -> np.ndarray:
    """``np.argsort(code, kind="stable")`` of 30-bit codes, as two 15-bit radix passes: NumPy
    sorts 16-bit keys by radix, and a stable pass on the high half after one on the low half
    gives the same order as one stable sort of the whole key (2M codes: 0.25 -> 0.09 s)."""
    first = np.argsort((code & np.uint32(0x7FFF)).astype(np.uint16), kind="stable")
    second = np.argsort((code[first] >> 15).astype(np.uint16), kind="stable")
    return first[second]


def chunk_index(position: np.ndarray, radius: np.ndarray, chunk_size: int) -> ChunkIndex:
    """Bounds of consecutive runs of ``chunk_size`` particles (use after spatial ordering)."""
    n = position.shape[0]
    c = -(-n // chunk_size)
    if n == 0:
        empty = np.zeros((0, 3), np.float32)
        return ChunkIndex(chunk_size, empty, empty.copy(), np.zeros(0, np.float32))
    starts = np.arange(c) * chunk_size
    lo = np.minimum.reduceat(position, starts, axis=0).astype(np.float32)
    hi = np.maximum.reduceat(position, starts, axis=0).astype(np.float32)
    rmax = np.maximum.reduceat(radius, starts).astype(np.float32)
    return ChunkIndex(chunk_size, lo, hi, rmax)


CHUNK_SIZE = 1024
"""Particles per chunk of a prepared frame. A tile culls, particle by particle, every particle
of the chunks its rect may touch: with 4,096 a chunk's screen box spanned ~430 px of a 1080p
bench frame, and the 16 tiles of a 4x4 grid culled 2.0 times the frame's particles between
them at 2M particles (3.9 times at 200,000); with 1,024, 1.4 (2.5) times, and 16 separate
``render_rect`` calls 10-18 % faster. Whole frames are unchanged (their chunks mostly lie
wholly inside and cull by opacity alone). 2M particles make 1,954 chunks, 55 kB of bounds."""


def prepare_frame(pf: ParticleFrame, chunk_size: int = CHUNK_SIZE) -> ParticleFrame:
    """Order particles along a Morton curve and attach a :class:`ChunkIndex`.

    Spatially close particles end up in the same chunk, so a tile renderer can skip whole chunks
    by their bounds; the image does not change because rendering orders by (depth, id).

    Args:
        pf: a valid frame.
        chunk_size: particles per chunk; smaller culls tighter, larger costs less to test.

    Returns:
        A new frame with the same particles, reordered, and ``chunks`` set.
    """
    if chunk_size <= 0:
        raise InvalidSpec(f"chunk_size must be > 0, got {chunk_size}", field="chunk_size")
    if pf.count == 0:
        return replace(pf, chunks=chunk_index(pf.position, pf.radius, chunk_size))
    order = _stable_order(_morton_codes(pf.position))
    position = _gather(pf.position, order)
    radius = _gather(pf.radius, order)
    return replace(
        pf,
        position=position,
        velocity=_gather(pf.velocity, order),
        radius=radius,
        colour=_gather(pf.colour, order),
        id=_gather(pf.id, order),
        chunks=chunk_index(position, radius, chunk_size),
    )


def _gather(arr: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``arr[order]`` as a plain array: ``np.take`` along rows, since fancy indexing of an
    (N, 3) array gathered 3-6x slower; ``asarray`` so a memory-mapped input does not make a
    ``np.memmap`` without a file."""
    return np.take(np.asarray(arr), order, axis=0)


def _pad(f: BinaryIO) -> int:
    pos = f.tell()
    extra = -pos % _ALIGN
    if extra:
        f.write(b"\0" * extra)
    return pos + extra


def _write_array(f: BinaryIO, arr: np.ndarray, dtype: np.dtype[Any]) -> dict[str, Any]:
    offset = _pad(f)
    data = np.ascontiguousarray(arr, dtype=dtype)
    f.write(data.tobytes())
    return {"offset": offset, "dtype": dtype.str, "shape": list(data.shape)}


def write_cache(path: str | os.PathLike[str], frames: Iterable[ParticleFrame]) -> None:
    """Write frames into one cache file at ``path`` (the caller makes the write atomic).

    Args:
        path: destination file; overwritten.
        frames: frames to store, streamed one at a time; frame numbers must be unique.

    Raises:
        InvalidSpec: if two frames share a number.
    """
    index: list[dict[str, Any]] = []
    seen: set[int] = set()
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<II", VERSION, 0))
        for pf in frames:
            if pf.frame in seen:
                raise InvalidSpec(
                    f"frame {pf.frame} given twice; frames must be unique", field="frame"
                )
            seen.add(pf.frame)
            entry: dict[str, Any] = {"frame": int(pf.frame), "count": pf.count, "arrays": {}}
            for name, (dtype, _tail) in FIELDS.items():
                entry["arrays"][name] = _write_array(f, getattr(pf, name), dtype)
            if pf.chunks is not None:
                ch = pf.chunks
                entry["chunks"] = {
                    "chunk_size": ch.chunk_size,
                    "lo": _write_array(f, ch.lo, np.dtype("<f4")),
                    "hi": _write_array(f, ch.hi, np.dtype("<f4")),
                    "max_radius": _write_array(f, ch.max_radius, np.dtype("<f4")),
                }
            index.append(entry)
        body = json.dumps({"version": VERSION, "frames": index}).encode()
        offset = f.tell()
        f.write(body)
        f.write(_TRAILER.pack(offset, len(body), END_MAGIC))


def _ranges(numbers: tuple[int, ...]) -> str:
    """``(1, 2, 3, 5)`` -> ``"1-3, 5"``: frame ranges written as artists do."""
    if not numbers:
        return "no frames"
    parts: list[str] = []
    start = prev = numbers[0]
    for n in (*numbers[1:], None):
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(f"{start}-{prev}" if prev != start else f"{start}")
        if n is not None:
            start = prev = n
    return ", ".join(parts)


class ParticleCache:
    """A cache file opened for reading; frames are memory-mapped views, loaded on access.

    Attributes:
        frames: frame numbers held, ascending.
    """

    def __init__(self, path: Path, data: np.memmap, index: dict[int, dict[str, Any]]) -> None:
        self.path = path
        self._data = data
        self._index = index
        self.frames: tuple[int, ...] = tuple(sorted(index))

    def _view(self, spec: dict[str, Any]) -> np.ndarray:
        dtype = np.dtype(spec["dtype"])
        shape = tuple(int(s) for s in spec["shape"])
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        start = int(spec["offset"])
        if start < 0 or start + nbytes > self._data.shape[0]:
            raise InvalidSpec(f"{self.path} is truncated or corrupt: an array lies past its end")
        return self._data[start : start + nbytes].view(dtype).reshape(shape)

    def frame(self, number: int) -> ParticleFrame:
        """The frame ``number``, with arrays memory-mapped read-only from the file.

        Raises:
            InvalidSpec: if the cache does not hold that frame.
        """
        entry = self._index.get(number)
        if entry is None:
            raise InvalidSpec(
                f"particle cache has no frame {number}; it holds {_ranges(self.frames)}",
                field="frame",
            )
        arrays = {name: self._view(spec) for name, spec in entry["arrays"].items()}
        chunks = None
        if entry.get("chunks"):
            c = entry["chunks"]
            chunks = ChunkIndex(
                int(c["chunk_size"]),
                self._view(c["lo"]),
                self._view(c["hi"]),
                self._view(c["max_radius"]),
            )
        return ParticleFrame(frame=number, chunks=chunks, **arrays)


def read_cache(path: str | os.PathLike[str]) -> ParticleCache:
    """Open a cache file written by :func:`write_cache`.

    Raises:
        InvalidSpec: if the file is missing, not a particle cache, truncated or corrupt.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise InvalidSpec(f"cannot open particle cache {p}: {exc.strerror}", field="path") from exc
    if size < len(MAGIC) + 8 + _TRAILER.size:
        raise InvalidSpec(f"{p} is not a particle cache (too short)", field="path")
    data = np.memmap(p, dtype=np.uint8, mode="r")
    if bytes(data[: len(MAGIC)]) != MAGIC:
        raise InvalidSpec(f"{p} is not a particle cache (bad magic)", field="path")
    offset, length, end = _TRAILER.unpack(bytes(data[size - _TRAILER.size :]))
    if end != END_MAGIC or offset + length > size - _TRAILER.size:
        raise InvalidSpec(f"{p} is truncated: the particle cache index is missing", field="path")
    try:
        header = json.loads(bytes(data[offset : offset + length]))
        index = {int(e["frame"]): e for e in header["frames"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidSpec(f"{p} has a corrupt particle cache index", field="path") from exc
    return ParticleCache(p, data, index)


def validate_cache(cache: ParticleCache, frames: Iterable[int]) -> None:
    """Check that every frame in ``frames`` is present and valid (run once before rendering).

    Raises:
        InvalidSpec: on the first missing frame or bad particle.
    """
    for number in frames:
        validate_frame(cache.frame(number))

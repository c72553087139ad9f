"""The built-in particle renderer: tile-exact splatting of a :class:`ParticleFrame`.

Image model (``docs/renderer.md`` derives it; ``_model.py`` holds its arithmetic, once):

* A particle projects through the :class:`Camera` to a centre ``(sx, sy)`` in pixels, a depth
  ``z`` (camera distance along the view axis) and a radius ``r = focal_px * radius / z`` pixels,
  clamped to ``[0.5, 2**20]``. Particles with depth outside ``[near, far]`` or zero opacity are
  dropped.
* Coverage conserves energy at any size: the particle deposits a total alpha of
  ``opacity * pi r² / 3`` (the integral of ``opacity * (1 - d²/r²)²``), spread by a kernel
  widened with a pixel-footprint low-pass, ``r_e² = r² + 2/3``: ``alpha = a * (1 - d²/r_e²)²``
  at a pixel centre at distance ``d < r_e``. The peak ``a`` divides the deposit by the kernel's
  exact sum over the pixel grid when ``r_e < 2.5`` (any sub-pixel position deposits exactly the
  same), by its integral ``pi r_e² / 3`` beyond (within 0.8 %). Even a particle of radius 0 covers
  at least one pixel, and sub-pixel motion never makes one twinkle.
* Every pixel composites its covering splats front to back with "over", in ONE global order:
  depth, then particle id. RGBA is premultiplied. ``Z`` is the depth of the front-most covering
  particle (+inf where none), ``id`` its id + 1 (0 where none), ``velocity.X/Y`` its screen motion
  in pixels per frame (project ``position`` and ``position + velocity``; the second depth is
  clamped to ``near``). A pixel stops once its transmittance falls below 1e-4.

Exactness at any tiling: a pixel's value depends only on its global coordinates and on the ordered
list of particles covering it. Every rectangle takes every particle whose conservative footprint
box touches it, all arithmetic is in global pixel coordinates with the same expressions in the
same order (a particle's amplitude is computed from the particle alone), and numba runs with
``fastmath=False`` (no fused multiply-add), so rectangles of any grid assemble bit for bit into
the whole frame.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from farm.errors import InvalidSpec
from farm.particles import _model
from farm.particles import _numpy_kernels as npk
from farm.particles.cache import FIELDS, ChunkIndex, ParticleFrame
from farm.particles.camera import Camera
from farm.vocab import AOV, AOV_CHANNELS, PixelRect

log = logging.getLogger(__name__)

BACKENDS = ("auto", "cuda", "numba", "numpy")
_numba_broken: str | None = None
"""Why numba failed to compile in this process, once it has (then "auto" uses numpy)."""
_cuda_broken: str | None = None
"""Why the CUDA kernels failed in this process, once they have (then "auto" uses the CPU)."""


@functools.cache
def _cuda_state() -> str | None:
    """``"device"`` where numba sees a CUDA GPU, ``"simulator"`` under ``NUMBA_ENABLE_CUDASIM=1``
    (CUDA kernels run on the CPU, for tests), else None. Asked once per process."""
    try:
        from numba import cuda
        from numba.core import config
    except ImportError:
        return None
    if config.ENABLE_CUDASIM:
        return "simulator"
    try:
        return "device" if cuda.is_available() else None
    except Exception as exc:  # a broken driver must not stop CPU rendering
        log.warning("CUDA unavailable here (%s); rendering on the CPU", exc)
        return None


def available_backends() -> tuple[str, ...]:
    """Backends that can run here, fastest first; ``"auto"`` takes the first.

    ``"cuda"`` comes first where a CUDA device exists, last under the CUDA simulator (which
    runs it, slowly, on the CPU, so tests can check it); then ``"numba"`` where numba
    imports and compiles, and always ``"numpy"``.
    """
    cpu: tuple[str, ...] = ("numpy",)
    if _numba_broken is None:
        try:
            from farm.particles import _kernels  # noqa: F401
        except ImportError:
            pass
        else:
            cpu = ("numba", "numpy")
    state = _cuda_state() if _cuda_broken is None and "numba" in cpu else None
    if state == "device":
        return ("cuda", *cpu)
    if state == "simulator":
        return (*cpu, "cuda")
    return cpu


def _resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise InvalidSpec(f"unknown backend {backend!r}; use one of {BACKENDS}", field="backend")
    if backend == "auto":
        return available_backends()[0]
    if backend != "numpy" and backend not in available_backends():
        raise InvalidSpec(
            f"the {backend} backend is not available here; use one of {available_backends()}",
            field="backend",
        )
    return backend


def _arrays(pf: ParticleFrame) -> dict[str, np.ndarray]:
    """Contiguous arrays of the right dtype; cheap shape checks so kernels never read out of bounds.

    Values are not checked (``validate_frame`` runs once before the farm sends tiles); NaN or
    infinite input is culled or gives NaN pixels, never a crash.
    """
    out: dict[str, np.ndarray] = {}
    n = np.shape(pf.id)[0] if np.ndim(pf.id) == 1 else -1
    for name, (dtype, tail) in FIELDS.items():
        arr = np.ascontiguousarray(getattr(pf, name), dtype=dtype)
        if arr.shape != (n, *tail):
            raise InvalidSpec(
                f"particle cache frame {pf.frame}: {name} has shape {arr.shape} but id has "
                f"{n} rows; every array needs one row per particle (run validate_frame)",
                field=name,
            )
        out[name] = arr
    return out


def _check_rect(rect: PixelRect, width: int, height: int) -> None:
    if rect.x1 > width or rect.y1 > height:
        raise InvalidSpec(
            f"rect {rect.as_tuple()} lies outside the {width}x{height} frame", field="rect"
        )


ChunkHulls = tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray
]
_HULLS: dict[bytes, ChunkHulls] = {}
_HULLS_KEPT = 4
"""Frames whose chunk hulls a process keeps: the tiles of one frame, sent to the same worker
one after another, project the chunk corners once instead of once per tile."""


def _chunk_hulls(ch: ChunkIndex, params: np.ndarray) -> ChunkHulls:
    """Each chunk's projected screen box and depth test, cached by chunk bounds and view.

    ``params`` (:meth:`Camera.projection_params`) holds the whole view: position, basis, focal
    length, image centre and clip range, so it is the cache key with the chunk bounds.

    Returns ``(sx_min, sx_max, sy_min, sy_max, in_depth, unbounded, within_depth)`` per chunk:
    the box of the projected corners of the chunk's centre box grown by its largest radius,
    whether the chunk may lie within ``[near, far]``, whether its projection is unbounded (a
    corner behind or near the camera, or not finite), which no screen box can describe, and
    whether every centre surely lies within ``[near, far]`` (with a relative slack of 1e-6, far
    above float64 rounding) and the box is bounded.
    """
    key = b"".join(
        np.ascontiguousarray(a).tobytes()
        for a in (ch.lo, ch.hi, ch.max_radius, np.asarray(params, np.float64))
    )
    hit = _HULLS.get(key)
    if hit is not None:
        return hit
    position, right, up, forward = params[0:3], params[3:6], params[6:9], params[9:12]
    f, hw, hh, near, far = params[12:17]
    rmax = ch.max_radius.astype(np.float64)[:, None]
    lo = ch.lo.astype(np.float64)
    hi = ch.hi.astype(np.float64)
    sel = np.array([[i >> a & 1 for a in range(3)] for i in range(8)], bool)  # (8, 3) corner mask

    def corners(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.where(sel[None], b[:, None, :], a[:, None, :]) - position

    with np.errstate(all="ignore"):
        zc = corners(lo, hi) @ forward
        slack = 1e-6 * (np.abs(zc).max(axis=1) + 1.0)
        in_depth = (zc.max(axis=1) >= near - slack) & (zc.min(axis=1) <= far + slack)
        grown = corners(lo - rmax, hi + rmax)
        gz = grown @ forward
        sx = hw + f * (grown @ right) / gz
        sy = hh - f * (grown @ up) / gz
        unbounded = ~(gz.min(axis=1) > 0.5 * near) | ~np.isfinite(sx).all(axis=1)
        unbounded |= ~np.isfinite(sy).all(axis=1)
        within_depth = (zc.min(axis=1) >= near + slack) & (zc.max(axis=1) <= far - slack)
        hulls = (
            sx.min(axis=1),
            sx.max(axis=1),
            sy.min(axis=1),
            sy.max(axis=1),
            in_depth,
            unbounded,
            within_depth & ~unbounded,
        )
    if len(_HULLS) >= _HULLS_KEPT:
        _HULLS.pop(next(iter(_HULLS)))
    _HULLS[key] = hulls
    return hulls


def _chunk_ranges(
    pf: ParticleFrame, params: np.ndarray, region: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index ranges of the chunks that may touch ``region`` (all particles without an index).

    Conservative: a chunk's centre box grown by its largest radius projects inside the convex hull
    of its projected corners (when all lie in front of the camera), which contains every
    particle's disc of projected radius ``r``. A footprint reaches at most
    ``FOOTPRINT_PAD_PX`` (1.32 px) past that disc (the 0.5 px floor and the pixel low-pass), its
    box 0.5 px more plus ``BOX_PAD_REL`` of its radius: the margin adds 2 px for those and for
    rounding, and ``2 * (BOX_PAD_REL - 1)`` of the chunk's screen extent, which bounds ``r``.
    The same bound as every other cull, so a tile takes every particle that reaches it.

    Also returns, per range, whether its chunks lie wholly inside: every centre within the depth
    range and its screen box at least a pixel inside the region, so every particle's footprint
    touches the region and only its opacity decides whether it is drawn (``_kernels.cull`` then
    skips its projection: a whole 1080p frame's cull took 13 ms instead of 39 in the bench
    scene). Ranges are cut where that changes.
    """
    n = pf.count
    ch = pf.chunks
    if ch is None or ch.count == 0 or ch.chunk_size <= 0:
        return np.array([0], np.int64), np.array([n], np.int64), np.zeros(1, np.bool_)
    sx_min, sx_max, sy_min, sy_max, in_depth, unbounded, within_depth = _chunk_hulls(ch, params)
    rx0, ry0, rx1, ry1 = region
    with np.errstate(all="ignore"):
        extent = np.maximum(sx_max - sx_min, sy_max - sy_min)
        m = _model.FOOTPRINT_PAD_PX + 2.0 + 2.0 * (_model.BOX_PAD_REL - 1.0) * extent
        on_screen = (
            (sx_max + m >= rx0)
            & (sx_min - m <= rx1 - 1)
            & (sy_max + m >= ry0)
            & (sy_min - m <= ry1 - 1)
        )
        inside = (
            within_depth
            & (sx_min >= rx0 + 1.0)
            & (sx_max <= rx1 - 1.0)
            & (sy_min >= ry0 + 1.0)
            & (sy_max <= ry1 - 1.0)
        )
    keep = in_depth & (on_screen | unbounded)
    k = np.flatnonzero(keep)
    if k.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.bool_)
    cut = (np.diff(k, prepend=-2) != 1) | (np.diff(inside[k], prepend=~inside[k[0]]) != 0)
    run_start = np.flatnonzero(cut)
    run_end = np.append(run_start[1:], k.size) - 1
    cs = ch.chunk_size
    starts = np.minimum(k[run_start].astype(np.int64) * cs, n)
    ends = np.minimum((k[run_end].astype(np.int64) + 1) * cs, n)
    return starts, ends, inside[k[run_start]]


Buffers = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""A rect's output planes: RGBA (4, h, w), Z (h, w), id (h, w), velocity (2, h, w)."""


def _empty(h: int, w: int) -> Buffers:
    return (
        np.zeros((4, h, w), np.float32),
        np.full((h, w), np.inf, np.float32),
        np.zeros((h, w), np.uint32),
        np.zeros((2, h, w), np.float32),
    )


def _channels(bufs: Buffers, aovs: tuple[AOV, ...]) -> dict[str, np.ndarray]:
    rgba, z, ids, vel = bufs
    planes: dict[str, np.ndarray] = {
        "R": rgba[0],
        "G": rgba[1],
        "B": rgba[2],
        "A": rgba[3],
        "Z": z,
        "id": ids,
        "velocity.X": vel[0],
        "velocity.Y": vel[1],
    }
    return {name: planes[name] for aov in aovs for name in AOV_CHANNELS[aov]}


def _rasterise(
    rects: Sequence[PixelRect],
    aovs: tuple[AOV, ...],
    raster: Callable[[PixelRect, Buffers], None],
) -> list[dict[str, np.ndarray]]:
    """Each rect's channels: fresh empty buffers, filled by a backend's ``raster``."""
    out = []
    for rect in rects:
        bufs = _empty(rect.height, rect.width)
        raster(rect, bufs)
        out.append(_channels(bufs, aovs))
    return out


def _records(rows: int, fields: int) -> np.ndarray:
    """``(rows, fields)`` float32 whose rows start on 64-byte boundaries (one cache line each)."""
    buf = np.empty((rows + 1) * fields, np.float32)
    skip = (-buf.ctypes.data % 64) // 4
    return buf[skip : skip + rows * fields].reshape(rows, fields)


def _render_numba(
    arrs: dict[str, np.ndarray],
    ranges: tuple[np.ndarray, np.ndarray, np.ndarray],
    params: np.ndarray,
    region: tuple[int, int, int, int],
    rects: Sequence[PixelRect],
    aovs: tuple[AOV, ...],
) -> list[dict[str, np.ndarray]]:
    """Cull, project, bin, order, then raster each rect (``docs/renderer.md``, "Design").

    Each stage is its own kernel and drops what the next does not need, so the working memory
    is the records of the particles touching the region plus the pixels of one rect at a time.
    """
    from farm.particles import _kernels as nk

    pos, vel, rad, col, ids = (arrs[k] for k in ("position", "velocity", "radius", "colour", "id"))
    gbx0, gby0, nbx, nby = nk._bin_grid(*region)
    counts = np.zeros(nbx * nby + 1, np.int64)
    # Find the region's own particles first, so records are made for those alone: a tile's
    # working memory follows its particles, not every particle of the chunks it touches.
    # A range of L candidates holds at most ceil(L / 2) runs (a culled particle between two).
    room = (int((ranges[1] - ranges[0]).sum()) + ranges[0].size) // 2 + 1
    run_starts, run_ends = np.empty(room, np.int64), np.empty(room, np.int64)
    runs, m = nk.cull(pos, rad, col, *ranges, params, *region, run_starts, run_ends)
    run_starts, run_ends = run_starts[:runs].copy(), run_ends[:runs].copy()
    rec = _records(m, nk.NREC)
    nk.project(pos, vel, rad, col, ids, run_starts, run_ends, params, *region, rec, counts)
    del run_starts, run_ends
    np.cumsum(counts, out=counts)
    entries = np.empty(int(counts[-1]), np.int32)
    keys = np.empty(int(counts[-1]), np.uint32)
    nk.fill_bins(rec, counts, gbx0, gby0, nbx, entries, keys)
    nk.sort_bins(rec, entries, keys, counts)
    del keys

    def raster(rect: PixelRect, bufs: Buffers) -> None:
        nk.raster(rec, entries, counts, gbx0, gby0, nbx, nby, *rect.as_tuple(), *bufs)

    return _rasterise(rects, aovs, raster)


def _render_numpy(
    arrs: dict[str, np.ndarray],
    ranges: tuple[np.ndarray, np.ndarray, np.ndarray],
    params: np.ndarray,
    region: tuple[int, int, int, int],
    rects: Sequence[PixelRect],
    aovs: tuple[AOV, ...],
) -> list[dict[str, np.ndarray]]:
    proj = npk.project(
        arrs["position"], arrs["velocity"], arrs["radius"], arrs["colour"], arrs["id"],
        ranges[0], ranges[1], params, region,
    )  # fmt: skip
    return _rasterise(rects, aovs, lambda rect, bufs: npk.raster(proj, rect.as_tuple(), *bufs))


def _render_cuda(
    arrs: dict[str, np.ndarray],
    ranges: tuple[np.ndarray, np.ndarray, np.ndarray],
    params: np.ndarray,
    region: tuple[int, int, int, int],
    rects: Sequence[PixelRect],
    aovs: tuple[AOV, ...],
) -> list[dict[str, np.ndarray]]:
    """Render the region on the GPU once (``_cuda_kernels``), then cut each rect from it."""
    from farm.particles import _cuda_kernels as ck

    rgba, z, ids, vel = ck.render_region(ck.upload(arrs), ranges[0], ranges[1], params, region)
    rx0, ry0 = region[0], region[1]

    def raster(rect: PixelRect, bufs: Buffers) -> None:
        ys = slice(rect.y0 - ry0, rect.y1 - ry0)
        xs = slice(rect.x0 - rx0, rect.x1 - rx0)
        for dst, src in zip(bufs, (rgba, z, ids, vel), strict=True):
            dst[...] = src[..., ys, xs]

    return _rasterise(rects, aovs, raster)


def render_tiles(
    pf: ParticleFrame,
    camera: Camera,
    *,
    width: int,
    height: int,
    rects: Sequence[PixelRect],
    aovs: Iterable[AOV] = tuple(AOV),
    backend: str = "auto",
) -> list[dict[str, np.ndarray]]:
    """Render several rectangles of one frame, projecting and binning the particles once.

    Args:
        pf: the frame (validated beforehand with ``validate_frame``).
        camera: the view.
        width: frame width in pixels.
        height: frame height in pixels.
        rects: rectangles in global pixel coordinates, inside the frame; may overlap.
        aovs: which AOVs to return.
        backend: ``"auto"`` (the first of :func:`available_backends`: ``"cuda"`` where a CUDA
            device exists, else numba when it imports and compiles), ``"cuda"``, ``"numba"``
            or ``"numpy"``. Experimental: ``"cuda"`` matches the CPU within 1e-5 relative,
            not bit for bit (``docs/renderer.md``, "GPU path").

    Returns:
        One dict per rect, EXR channel name -> C-contiguous ``(rect.height, rect.width)`` array:
        ``R G B A`` float32 premultiplied, ``Z`` float32, ``id`` uint32, ``velocity.X/Y`` float32.

    Raises:
        InvalidSpec: on an unknown backend, a rect outside the frame or mismatched arrays.
    """
    global _numba_broken, _cuda_broken
    if width < 1 or height < 1:
        raise InvalidSpec(f"frame size {width}x{height} must be at least 1x1", field="width")
    aov_t = tuple(AOV(a) for a in aovs)
    chosen = _resolve_backend(backend)
    rects = list(rects)
    for rect in rects:
        _check_rect(rect, width, height)
    if not rects:
        return []
    arrs = _arrays(pf)
    region = (
        min(r.x0 for r in rects),
        min(r.y0 for r in rects),
        max(r.x1 for r in rects),
        max(r.y1 for r in rects),
    )
    params = camera.projection_params(width, height)
    ranges = _chunk_ranges(pf, params, region)
    if chosen == "cuda":
        try:
            return _render_cuda(arrs, ranges, params, region, rects, aov_t)
        except Exception as exc:
            if backend != "auto":
                raise
            _cuda_broken = repr(exc)
            log.warning("CUDA rendering failed (%s); rendering on the CPU", exc)
            chosen = available_backends()[0]
    if chosen == "numba":
        try:
            return _render_numba(arrs, ranges, params, region, rects, aov_t)
        except Exception as exc:
            if backend != "auto" or not _is_compile_error(exc):
                raise
            _numba_broken = repr(exc)
            log.warning("numba kernels failed to compile (%s); rendering with numpy", exc)
    return _render_numpy(arrs, ranges, params, region, rects, aov_t)


def _is_compile_error(exc: Exception) -> bool:
    try:
        from numba.core.errors import NumbaError
    except ImportError:  # pragma: no cover - numba vanished after import
        return True
    return isinstance(exc, NumbaError)


def render_rect(
    pf: ParticleFrame,
    camera: Camera,
    *,
    width: int,
    height: int,
    rect: PixelRect,
    aovs: Iterable[AOV] = tuple(AOV),
    backend: str = "auto",
) -> dict[str, np.ndarray]:
    """Render one rectangle (one tile) of a frame; bit for bit the same pixels as the whole frame.

    Only chunks of ``pf.chunks`` that may touch the rect are read (all particles without an
    index), then particles are culled one by one and records are made for those that reach the
    rect only, so working memory grows with the rect's own particles and pixels. Arguments as
    in :func:`render_tiles`.
    """
    return render_tiles(
        pf, camera, width=width, height=height, rects=[rect], aovs=aovs, backend=backend
    )[0]


def render_frame(
    pf: ParticleFrame,
    camera: Camera,
    *,
    width: int,
    height: int,
    aovs: Iterable[AOV] = tuple(AOV),
    backend: str = "auto",
) -> dict[str, np.ndarray]:
    """Render the whole ``width x height`` frame. Arguments as in :func:`render_tiles`."""
    if width < 1 or height < 1:
        raise InvalidSpec(f"frame size {width}x{height} must be at least 1x1", field="width")
    full = PixelRect(x0=0, y0=0, x1=width, y1=height)
    return render_rect(
        pf, camera, width=width, height=height, rect=full, aovs=aovs, backend=backend
    )


PREVIEW_SAMPLES = 262_144
"""Particles a cost preview looks at, at most: every k-th of a Morton-ordered frame is an even
spatial sample, and the preview only has to say roughly where the work is."""


def cost_preview(
    pf: ParticleFrame, camera: Camera, *, width: int, height: int, cells: tuple[int, int] = (64, 36)
) -> np.ndarray:
    """Where on screen the render work of a frame lies, before any tile has been measured.

    Each sampled particle in front of the camera adds ``1 + (2 r_e)²`` (its fixed cost plus the
    pixels its footprint's box tests, ``r_e`` its drawn radius in pixels, see ``_model.py``) to
    the cell holding its projected centre. Relative units: only the shape matters, for cutting
    a layer's first frame into tiles of equal cost (``scheduler.tiles.balanced_plan``) and
    sending the dear ones first.

    Returns:
        ``(rows, cols)`` float64 cost per cell of a ``cells = (cols, rows)`` grid over the
        frame (cells of equal size, up to a pixel).
    """
    cols, rows = cells
    if cols < 1 or rows < 1:
        raise InvalidSpec(f"preview grid {cols}x{rows} must be at least 1x1", field="cells")
    step = max(1, -(-pf.count // PREVIEW_SAMPLES))
    sx, sy, zc = camera.project(pf.position[::step], width=width, height=height).T
    with np.errstate(all="ignore"):
        f = camera.focal_px(width)
        r = np.clip(f * np.asarray(pf.radius[::step], np.float64) / zc, _model.R_MIN_PX, 2.0**20)
        re2 = r * r + _model.LOWPASS_PX2
        keep = (zc >= camera.near) & (zc <= camera.far) & (np.asarray(pf.colour[::step, 3]) > 0)
        keep &= (sx >= 0) & (sx < width) & (sy >= 0) & (sy < height)
    cx = np.minimum((sx[keep] * cols / width).astype(np.int64), cols - 1)
    cy = np.minimum((sy[keep] * rows / height).astype(np.int64), rows - 1)
    work = 1.0 + 4.0 * re2[keep]
    grid = np.bincount(cy * cols + cx, weights=work, minlength=rows * cols)
    return grid.reshape(rows, cols) * step

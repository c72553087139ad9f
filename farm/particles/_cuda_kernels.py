"""Numba CUDA kernels of the splatting renderer: the CPU path's image model on a GPU.

Experimental: may change. Called by ``render._render_cuda`` in this order (``docs/renderer.md``,
"GPU path"):

1. :func:`project_kernel`, one thread per candidate particle: the culling rule, the projection
   and the amplitude, compiled from the same functions as the CPU kernels (``_kernels._centre``,
   ``_kernels._drawn``, ``_kernels._bin_range`` and ``_model``), into a record per particle and
   a count per bin it touches.
2. :func:`fill_kernel`: each record's number into every bin it touches. The slot comes from an
   atomic counter, so the order inside a bin changes from run to run; the next step makes it
   irrelevant.
3. :func:`sort_kernel`, one block per bin: a bitonic sort of the bin by (depth, particle id,
   particle index), a key unique to each record, so the result is one order whatever the fill
   order was: the CPU path's (its radix sort by depth is stable over particle order, then ties
   are ordered by id).
4. :func:`raster_kernel`, one thread per pixel: the pixel blends its bin's records front to back
   with the CPU raster's float32 operations in the same order (``_kernels._blend8``).

No fused multiply-add (see :func:`no_fma`): NVVM contracts ``a * b + c`` by default, and one
contraction at a footprint's edge can flip ``t > 0``, changing which particle is front-most.
Under ``NUMBA_ENABLE_CUDASIM=1`` these kernels run on the CPU (the unit tests' way).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from numba import cuda

from farm.particles import _kernels, _model

log = logging.getLogger(__name__)

BIN = 16
"""Side of the square pixel bins, anchored at the frame origin: one 16 x 16 thread block each.
Which bins records go to never changes a pixel: a pixel blends every record covering it, in
the global order, whatever bin holds it."""
THREADS = BIN * BIN
NREC = 11
"""Record fields (float32): sx, sy, r_e, 1/r_e², depth, R, G, B, amplitude, velocity x, y."""
_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)
T_MIN = _model.T_MIN


def no_fma() -> bool:
    """Make NVVM compile this process's CUDA kernels without fused multiply-add; True if done.

    Numba's CUDA target passes only ``fastmath`` and ``opt`` to NVVM, whose default is
    ``-fma=1``; the CPU kernels run with ``fastmath=False``, no contraction. This wraps
    ``nvvm.compile_ir`` once so that a kernel compiled without ``fastmath`` gets ``-fma=0``
    (``fastmath=True`` kernels still get FMA). ``bench/gpu_check.py`` checks the PTX for
    ``fma.rn``. Returns False (and the GPU path stays within rounding, not bit for bit) where
    this numba lays NVVM out differently.
    """
    from numba.core import config

    if config.ENABLE_CUDASIM:
        return False  # the simulator runs Python: no NVVM, no contraction
    try:
        from numba.cuda.cudadrv import nvvm
    except ImportError:
        return False
    compile_ir = getattr(nvvm, "compile_ir", None)
    if compile_ir is None:
        log.warning("numba.cuda has no nvvm.compile_ir here; CUDA kernels may use FMA")
        return False
    if getattr(compile_ir, "_delta_no_fma", False):
        return True

    def wrapped(llvmir: Any, **opts: Any) -> Any:
        opts.setdefault("fma", False)
        return compile_ir(llvmir, **opts)

    wrapped._delta_no_fma = True  # type: ignore[attr-defined]
    nvvm.compile_ir = wrapped
    return True


NO_FMA = no_fma()

# The CPU path's own per-particle functions, compiled again as device functions (``_model``'s
# are ``register_jitable``, callable from any target once ``_kernels`` has imported).
_centre = cuda.jit(device=True)(_kernels._centre.py_func)
_drawn = cuda.jit(device=True)(_kernels._drawn.py_func)
_bin_range = cuda.jit(device=True)(_kernels._bin_range.py_func)


@cuda.jit(device=True)
def _grid_sum(s: Any, u: Any, re: Any, iv: Any) -> Any:
    """``_model.grid_sums`` for one footprint: the same weights, summed in the same order."""
    bx0, by0, _, _ = _model.box(s, u, re)
    x0 = np.float64(math.ceil(bx0))
    y0 = np.float64(math.ceil(by0))
    a0 = _model.offset2(x0, s)
    a1 = _model.offset2(x0 + 1.0, s)
    a2 = _model.offset2(x0 + 2.0, s)
    a3 = _model.offset2(x0 + 3.0, s)
    a4 = _model.offset2(x0 + 4.0, s)
    a5 = _model.offset2(x0 + 5.0, s)
    c0 = c1 = c2 = c3 = c4 = c5 = _ZERO
    for row in range(6):
        e = _model.offset2(y0 + row, u)
        c0 += _model.weight(a0, e, iv)
        c1 += _model.weight(a1, e, iv)
        c2 += _model.weight(a2, e, iv)
        c3 += _model.weight(a3, e, iv)
        c4 += _model.weight(a4, e, iv)
        c5 += _model.weight(a5, e, iv)
    return ((c0 + c1) + (c2 + c3)) + (c4 + c5)


@cuda.jit(device=True)
def _particle(run_offsets: Any, starts: Any, k: int) -> int:
    """Candidate ``k``'s particle index: ranges ``[starts[c], ...)`` laid end to end, their
    first candidates at ``run_offsets[c]`` (ascending), found by binary search."""
    lo = 0
    hi = starts.size - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if run_offsets[mid] <= k:
            lo = mid
        else:
            hi = mid - 1
    return starts[lo] + (k - run_offsets[lo])


@cuda.jit(fastmath=False)
def project_kernel(
    position: Any, velocity: Any, radius: Any, colour: Any, ids: Any,
    starts: Any, run_offsets: Any, params: Any, region: Any, nbx: int,
    rec: Any, rec_id: Any, rec_index: Any, rec_bins: Any, counts: Any,
) -> None:  # fmt: skip
    """Candidate ``k``'s record: ``_kernels.cull`` then ``_kernels.project`` for one particle.

    ``region`` holds ``rx0, ry0, rx1, ry1`` and the first bin ``gbx0, gby0``. A particle not
    drawn gets an empty bin box (``rec_bins[k, 0] > rec_bins[k, 2]``); a drawn one adds 1 to
    ``counts`` for each bin it touches (atomic adds: the totals do not depend on their order).
    """
    k = cuda.grid(1)
    if k >= rec.shape[0]:
        return
    i = _particle(run_offsets, starts, k)
    rx0, ry0, rx1, ry1, gbx0, gby0 = (
        region[0],
        region[1],
        region[2],
        region[3],
        region[4],
        region[5],
    )
    dx, dy, dz, zc, s_x, s_y, rp = _centre(position, radius, i, params)
    r2, re2 = _model.footprint(rp)
    sx32 = np.float32(s_x)
    sy32 = np.float32(s_y)
    re32 = np.float32(math.sqrt(re2))
    rec_index[k] = i
    if not _drawn(colour[i, 3], zc, params, sx32, sy32, re32, rx0, ry0, rx1, ry1):
        rec_bins[k, 0] = 0
        rec_bins[k, 1] = 0
        rec_bins[k, 2] = -1
        rec_bins[k, 3] = -1
        return
    inv32 = np.float32(1.0 / re2)
    f, hw, hh, near = params[12], params[13], params[14], params[15]
    ex = dx + np.float64(velocity[i, 0])
    ey = dy + np.float64(velocity[i, 1])
    ez = dz + np.float64(velocity[i, 2])
    ze = ex * params[9] + ey * params[10] + ez * params[11]
    if not ze >= near:
        ze = near
    xe = ex * params[3] + ey * params[4] + ez * params[5]
    ye = ex * params[6] + ey * params[7] + ez * params[8]
    ize = 1.0 / ze
    rec[k, 0] = sx32
    rec[k, 1] = sy32
    rec[k, 2] = re32
    rec[k, 3] = inv32
    rec[k, 4] = np.float32(zc)
    rec[k, 5] = colour[i, 0]
    rec[k, 6] = colour[i, 1]
    rec[k, 7] = colour[i, 2]
    if re32 < _model.EXACT_BELOW_PX:
        dep = _model.deposit(colour[i, 3], r2)
        rec[k, 8] = _model.amplitude_narrow(dep, _grid_sum(sx32, sy32, re32, inv32))
    else:
        rec[k, 8] = _model.amplitude_wide(colour[i, 3], r2, re2)
    rec[k, 9] = np.float32(hw + f * xe * ize - s_x)
    rec[k, 10] = np.float32(hh - f * ye * ize - s_y)
    rec_id[k] = ids[i] + np.uint32(1)
    lx, ly, hx, hy = _bin_range(sx32, sy32, re32, rx0, ry0, rx1, ry1)
    bx_lo = lx // BIN - gbx0
    by_lo = ly // BIN - gby0
    bx_hi = hx // BIN - gbx0
    by_hi = hy // BIN - gby0
    rec_bins[k, 0] = bx_lo
    rec_bins[k, 1] = by_lo
    rec_bins[k, 2] = bx_hi
    rec_bins[k, 3] = by_hi
    for by in range(by_lo, by_hi + 1):
        for bx in range(bx_lo, bx_hi + 1):
            cuda.atomic.add(counts, by * nbx + bx, 1)


@cuda.jit(fastmath=False)
def fill_kernel(rec_bins: Any, offsets: Any, fill: Any, nbx: int, entries: Any) -> None:
    """Record ``k``'s number into each of its bins, at a slot taken from ``fill`` (atomic)."""
    k = cuda.grid(1)
    if k >= rec_bins.shape[0]:
        return
    for by in range(rec_bins[k, 1], rec_bins[k, 3] + 1):
        for bx in range(rec_bins[k, 0], rec_bins[k, 2] + 1):
            b = by * nbx + bx
            slot = cuda.atomic.add(fill, b, 1)
            entries[offsets[b] + slot] = k


@cuda.jit(device=True)
def _after(rec: Any, rec_id: Any, rec_index: Any, a: int, b: int) -> bool:
    """Whether record ``a`` blends after record ``b``: by depth, then id, then particle index
    (all distinct, so one order); -1 (padding) after everything."""
    if a < 0:
        return b >= 0
    if b < 0:
        return False
    za = rec[a, 4]
    zb = rec[b, 4]
    if za != zb:
        return za > zb
    if rec_id[a] != rec_id[b]:
        return rec_id[a] > rec_id[b]
    return rec_index[a] > rec_index[b]


@cuda.jit(fastmath=False)
def sort_kernel(rec: Any, rec_id: Any, rec_index: Any, offsets: Any, entries: Any) -> None:
    """Block ``b`` sorts bin ``b``'s ``offsets[b + 1] - offsets[b]`` slots (a power of two,
    padded with -1) in place: a bitonic sort in global memory, any bin size."""
    b = cuda.blockIdx.x
    t = cuda.threadIdx.x
    o0 = offsets[b]
    n = offsets[b + 1] - o0
    k = 2
    while k <= n:
        j = k // 2
        while j > 0:
            for i in range(t, n, cuda.blockDim.x):
                partner = i ^ j
                if partner > i:
                    ea = entries[o0 + i]
                    eb = entries[o0 + partner]
                    if _after(rec, rec_id, rec_index, ea, eb) == ((i & k) == 0):
                        entries[o0 + i] = eb
                        entries[o0 + partner] = ea
            cuda.syncthreads()
            j //= 2
        k *= 2


@cuda.jit(fastmath=False)
def raster_kernel(
    rec: Any, rec_id: Any, offsets: Any, counts: Any, entries: Any, region: Any, nbx: int,
    out_rgba: Any, out_z: Any, out_id: Any, out_v: Any,
) -> None:  # fmt: skip
    """One thread per pixel of the region: blend its bin's records front to back.

    The same float32 operations in the same order as one lane of ``_kernels._blend8``: the
    footprint's box (``_kernels._bin_range``), ``t = 1 - (dx² + dy²) / r_e²``, ``a = amp t²``
    where ``t > 0``, then "over". A pixel stops at transmittance below ``T_MIN``, as the CPU's
    lanes blend ``a = 0`` from there. Outputs are region-sized, pre-filled with empty values.
    """
    rx0, ry0, rx1, ry1, gbx0, gby0 = (
        region[0],
        region[1],
        region[2],
        region[3],
        region[4],
        region[5],
    )
    b = cuda.blockIdx.x
    bx = b % nbx
    by = b // nbx
    x = (gbx0 + bx) * BIN + cuda.threadIdx.x % BIN
    y = (gby0 + by) * BIN + cuda.threadIdx.x // BIN
    if x < rx0 or x >= rx1 or y < ry0 or y >= ry1:
        return
    px = np.float32(x + 0.5)
    py = np.float32(y + 0.5)
    cr = _ZERO
    cg = _ZERO
    cb = _ZERO
    ca = _ZERO
    tr = _ONE
    front = -1
    for e in range(offsets[b], offsets[b] + counts[b]):
        if tr < T_MIN:
            break
        j = entries[e]
        sx = rec[j, 0]
        sy = rec[j, 1]
        lx, ly, hx, hy = _bin_range(sx, sy, rec[j, 2], x, y, x + 1, y + 1)
        if lx > hx or ly > hy:
            continue
        dx = px - sx
        dy = py - sy
        t = _ONE - (dx * dx + dy * dy) * rec[j, 3]
        if not t > _ZERO:
            continue
        a = rec[j, 8] * (t * t)
        ta = tr * a
        cr = cr + ta * rec[j, 5]
        cg = cg + ta * rec[j, 6]
        cb = cb + ta * rec[j, 7]
        ca = ca + ta
        tr = tr * (_ONE - a)
        if front < 0:
            front = j
    ox = x - rx0
    oy = y - ry0
    out_rgba[0, oy, ox] = cr
    out_rgba[1, oy, ox] = cg
    out_rgba[2, oy, ox] = cb
    out_rgba[3, oy, ox] = ca
    if front >= 0:
        out_z[oy, ox] = rec[front, 4]
        out_id[oy, ox] = rec_id[front]
        out_v[0, oy, ox] = rec[front, 9]
        out_v[1, oy, ox] = rec[front, 10]
    else:
        out_z[oy, ox] = np.float32(np.inf)
        out_id[oy, ox] = np.uint32(0)
        out_v[0, oy, ox] = _ZERO
        out_v[1, oy, ox] = _ZERO


@cuda.jit(fastmath=False)
def pad_kernel(entries: Any) -> None:
    """Every slot -1 (padding, which sorts last) before :func:`fill_kernel` fills bins."""
    k = cuda.grid(1)
    if k < entries.size:
        entries[k] = -1


DeviceFrame = dict[str, Any]
"""A frame's particle arrays on the device, by ``cache.FIELDS`` name (:func:`upload`)."""


def upload(arrs: dict[str, np.ndarray]) -> DeviceFrame:
    """Copy a frame's contiguous particle arrays (``render._arrays``) to the device."""
    return {k: cuda.to_device(arrs[k]) for k in ("position", "velocity", "radius", "colour", "id")}


def _blocks(n: int) -> int:
    return max(1, -(-n // THREADS))


def render_region(
    dev: DeviceFrame,
    starts: np.ndarray,
    ends: np.ndarray,
    params: np.ndarray,
    region: tuple[int, int, int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Render region ``[rx0, rx1) x [ry0, ry1)`` from the particles of ranges
    ``[starts[c], ends[c])`` (ascending, disjoint): RGBA ``(4, h, w)``, Z, id, velocity
    ``(2, h, w)`` host arrays, the CPU raster's layout and empty values.

    One host round trip: the bins' counts come back to size the padded bins (a power of two
    each, for the bitonic sort; at most twice the entries).
    """
    rx0, ry0, rx1, ry1 = region
    gbx0, gby0 = rx0 // BIN, ry0 // BIN
    nbx = (rx1 - 1) // BIN - gbx0 + 1
    nby = (ry1 - 1) // BIN - gby0 + 1
    nb = nbx * nby
    h, w = ry1 - ry0, rx1 - rx0
    lengths = np.asarray(ends, np.int64) - np.asarray(starts, np.int64)
    m = int(lengths.sum())
    if m == 0:
        return (
            np.zeros((4, h, w), np.float32),
            np.full((h, w), np.inf, np.float32),
            np.zeros((h, w), np.uint32),
            np.zeros((2, h, w), np.float32),
        )
    run_offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    d_region = cuda.to_device(np.array([rx0, ry0, rx1, ry1, gbx0, gby0], np.int64))
    d_params = cuda.to_device(np.ascontiguousarray(params, np.float64))
    rec = cuda.device_array((m, NREC), np.float32)
    rec_id = cuda.device_array(m, np.uint32)
    rec_index = cuda.device_array(m, np.int64)
    rec_bins = cuda.device_array((m, 4), np.int32)
    counts = cuda.to_device(np.zeros(nb, np.int64))
    project_kernel[_blocks(m), THREADS](
        dev["position"], dev["velocity"], dev["radius"], dev["colour"], dev["id"],
        cuda.to_device(np.asarray(starts, np.int64)), cuda.to_device(run_offsets), d_params,
        d_region, nbx, rec, rec_id, rec_index, rec_bins, counts,
    )  # fmt: skip
    n_b = counts.copy_to_host()
    cap = np.where(n_b > 1, 2 ** np.ceil(np.log2(np.maximum(n_b, 1))), n_b).astype(np.int64)
    offsets = np.zeros(nb + 1, np.int64)
    np.cumsum(cap, out=offsets[1:])
    total = max(int(offsets[-1]), 1)
    entries = cuda.device_array(total, np.int32)
    pad_kernel[_blocks(total), THREADS](entries)
    d_offsets = cuda.to_device(offsets)
    fill_kernel[_blocks(m), THREADS](
        rec_bins, d_offsets, cuda.to_device(np.zeros(nb, np.int64)), nbx, entries
    )
    sort_kernel[nb, THREADS](rec, rec_id, rec_index, d_offsets, entries)
    out_rgba = cuda.device_array((4, h, w), np.float32)
    out_z = cuda.device_array((h, w), np.float32)
    out_id = cuda.device_array((h, w), np.uint32)
    out_v = cuda.device_array((2, h, w), np.float32)
    raster_kernel[nb, THREADS](
        rec, rec_id, d_offsets, counts, entries, d_region, nbx, out_rgba, out_z, out_id, out_v
    )
    return (
        out_rgba.copy_to_host(),
        out_z.copy_to_host(),
        out_id.copy_to_host(),
        out_v.copy_to_host(),
    )

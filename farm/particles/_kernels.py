"""numba kernels of the tile-binned splatting renderer (see ``render.py`` for the image model).

Every kernel is ``@njit(cache=True, fastmath=False)``: ``cache=True`` lets the many Ray worker
processes reuse one compiled copy; ``fastmath=False`` keeps IEEE semantics with no contraction to
fused multiply-add, so a pixel's value depends only on its global coordinates and the ordered list
of particles covering it, never on the tile it was rendered in. The numpy fallback in
``_numpy_kernels.py`` writes the same expressions in the same order.

Importing this module imports numba; ``render.py`` falls back to numpy when that fails.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

BIN = 16
"""Side of the square pixel bins particles are sorted into, anchored at the frame origin."""
T_MIN = np.float32(1e-4)
"""A pixel stops blending once its transmittance drops below this (per pixel, so tile-exact)."""
R_MIN_PX = 0.5
"""Smallest splat radius in pixels, so distant particles still cover their pixel centre."""
R_MAX_PX = 1048576.0
"""Largest splat radius in pixels (2**20), keeping every box finite; far beyond any frame."""
NREC = 16
"""Record fields: sx, sy, r, r2, inv_r2, depth, R, G, B, opacity, velocity x, velocity y, then
id + 1 as uint32 bits, then padding: 64 bytes, one cache line per record (see ``_aligned``)."""


PREFETCH_AHEAD = 4
"""Records the raster asks the memory system for ahead of the one it blends (see ``_prefetch``)."""


@intrinsic
def _prefetch(typingctx: Any, rows: Any, row: Any) -> Any:
    """Hint the CPU to fetch ``rows[row]`` (a 2-D C array's row) into cache: ``llvm.prefetch``.

    The raster visits records in a bin's depth order, which jumps around the record array, and
    each record is followed by dependent pixel work, so the out-of-order core cannot run ahead
    to the next record's cache miss by itself. A prefetch does not change any value.
    """

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        arrty = sig.args[0]
        ary = context.make_array(arrty)(context, builder, args[0])
        zero = context.get_constant(types.intp, 0)
        ptr = cgutils.get_item_pointer(context, builder, arrty, ary, [args[1], zero])
        i8p = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        # read (0), keep in all cache levels (3), data cache (1)
        builder.call(fn, [i8p, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(rows, types.intp), codegen


@njit(cache=True)
def _no_prefetch(rows: np.ndarray, row: int) -> None:
    """Stands in for :func:`_prefetch` where this LLVM refuses it: same pixels, slower raster."""


@njit(cache=True)
def _prefetch_probe(rows: np.ndarray) -> None:
    _prefetch(rows, 0)


def usable_prefetch(probe: Callable[[np.ndarray], None] = _prefetch_probe) -> Any:
    """:func:`_prefetch` if it compiles here, else :func:`_no_prefetch`.

    The intrinsic's name (``llvm.prefetch.p0i8``) is LLVM's, not numba's, and a future llvmlite
    may refuse it. Without this probe that would make the whole raster fail to compile and the
    renderer fall back to numpy, about 4x slower; with it only the prefetch is lost.
    """
    try:
        probe(np.zeros((1, 1), np.float32))
    except Exception as exc:  # numba raises several error types for a refused intrinsic
        logging.getLogger(__name__).warning("raster prefetch unavailable here (%s)", exc)
        return _no_prefetch
    return _prefetch


_prefetch_row = usable_prefetch()
"""The prefetch the raster calls, chosen once per process before the raster compiles."""


@njit(cache=True, fastmath=False)
def box(sx: float, sy: float, r: float) -> tuple[float, float, float, float]:
    """Conservative float64 box of pixel indices a splat may cover (inclusive bounds).

    The pixel test ``d2 < r2`` is the only arbiter of coverage; this box just has to contain
    every pixel that passes it, with margin for float32 rounding of ``r2`` and ``d2``.
    """
    rb = np.float64(r) * 1.00001 + 0.001
    return sx - rb - 0.5, sy - rb - 0.5, sx + rb - 0.5, sy + rb - 0.5


@njit(cache=True, fastmath=False)
def _aligned(rows: int) -> np.ndarray:
    """``(rows, NREC)`` float32 records whose rows start on 64-byte cache-line boundaries."""
    buf = np.empty((rows + 1) * NREC, np.float32)
    skip = (-buf.ctypes.data % 64) // 4
    return buf[skip : skip + rows * NREC].reshape((rows, NREC))


@njit(cache=True, fastmath=False)
def _bin_range(
    sx: float, sy: float, r: float, gx0: int, gy0: int, gx1: int, gy1: int
) -> tuple[int, int, int, int]:
    bx0, by0, bx1, by1 = box(sx, sy, r)
    lo_x = gx0 if bx0 < gx0 else math.ceil(bx0)
    lo_y = gy0 if by0 < gy0 else math.ceil(by0)
    hi_x = gx1 - 1 if bx1 > gx1 - 1 else math.floor(bx1)
    hi_y = gy1 - 1 if by1 > gy1 - 1 else math.floor(by1)
    return lo_x, lo_y, hi_x, hi_y


@njit(cache=True, fastmath=False)
def _bin_grid(rx0: int, ry0: int, rx1: int, ry1: int) -> tuple[int, int, int, int]:
    """The bins covering region ``[rx0, rx1) x [ry0, ry1)``: first bin (x, y) and counts."""
    gbx0 = rx0 // BIN
    gby0 = ry0 // BIN
    return gbx0, gby0, (rx1 - 1) // BIN - gbx0 + 1, (ry1 - 1) // BIN - gby0 + 1


@njit(cache=True, fastmath=False)
def project(
    position: np.ndarray,
    velocity: np.ndarray,
    radius: np.ndarray,
    colour: np.ndarray,
    ids: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    params: np.ndarray,
    rx0: int,
    ry0: int,
    rx1: int,
    ry1: int,
) -> tuple[Any, ...]:
    """Project the particles in index ranges ``[starts[c], ends[c])`` and keep those whose box
    touches the region ``[rx0, rx1) x [ry0, ry1)``, in input order.

    Returns ``(m, proj, key, bins, counts)``: packed records, the depth's float32 bit pattern (the
    sort key), each record's inclusive range of bins (x0, y0, x1, y1, relative to the region's
    first bin) and the number of records per bin (shifted by one, ready for a prefix sum); only
    the first ``m`` rows are valid. Records are
    packed here, while reading the input in memory order, because the later passes visit them
    in depth order and one cache line per particle is what that costs.
    """
    total = 0
    for c in range(starts.size):
        total += ends[c] - starts[c]
    proj = _aligned(total)
    bits = proj.view(np.uint32)
    zs = np.empty(total, np.float32)
    bins = np.empty((total, 4), np.int32)
    gbx0, gby0, nbx, nby = _bin_grid(rx0, ry0, rx1, ry1)
    counts = np.zeros(nbx * nby + 1, np.int64)
    c0, c1, c2 = params[0], params[1], params[2]
    r0, r1, r2 = params[3], params[4], params[5]
    u0, u1, u2 = params[6], params[7], params[8]
    f0, f1, f2 = params[9], params[10], params[11]
    f, hw, hh, near, far = params[12], params[13], params[14], params[15], params[16]
    m = 0
    for c in range(starts.size):
        for i in range(starts[c], ends[c]):
            op = colour[i, 3]
            if not op > 0:
                continue
            dx = np.float64(position[i, 0]) - c0
            dy = np.float64(position[i, 1]) - c1
            dz = np.float64(position[i, 2]) - c2
            zc = dx * f0 + dy * f1 + dz * f2
            if not (zc >= near and zc <= far):
                continue
            xc = dx * r0 + dy * r1 + dz * r2
            yc = dx * u0 + dy * u1 + dz * u2
            iz = 1.0 / zc
            s_x = hw + f * xc * iz
            s_y = hh - f * yc * iz
            rp = f * np.float64(radius[i]) * iz
            if not rp >= R_MIN_PX:
                rp = R_MIN_PX
            if rp > R_MAX_PX:
                rp = R_MAX_PX
            sx32 = np.float32(s_x)
            sy32 = np.float32(s_y)
            r32 = np.float32(rp)
            bx0, by0, bx1, by1 = box(sx32, sy32, r32)
            if not (bx0 <= rx1 - 1 and bx1 >= rx0 and by0 <= ry1 - 1 and by1 >= ry0):
                continue
            ex = dx + np.float64(velocity[i, 0])
            ey = dy + np.float64(velocity[i, 1])
            ez = dz + np.float64(velocity[i, 2])
            ze = ex * f0 + ey * f1 + ez * f2
            if not ze >= near:
                ze = near
            xe = ex * r0 + ey * r1 + ez * r2
            ye = ex * u0 + ey * u1 + ez * u2
            ize = 1.0 / ze
            z32 = np.float32(zc)
            proj[m, 0] = sx32
            proj[m, 1] = sy32
            proj[m, 2] = r32
            proj[m, 3] = np.float32(rp * rp)
            proj[m, 4] = np.float32(1.0 / (rp * rp))
            proj[m, 5] = z32
            proj[m, 6] = colour[i, 0]
            proj[m, 7] = colour[i, 1]
            proj[m, 8] = colour[i, 2]
            proj[m, 9] = op
            proj[m, 10] = np.float32(hw + f * xe * ize - s_x)
            proj[m, 11] = np.float32(hh - f * ye * ize - s_y)
            bits[m, 12] = ids[i] + np.uint32(1)
            zs[m] = z32
            lx, ly, hx, hy = _bin_range(sx32, sy32, r32, rx0, ry0, rx1, ry1)
            bx_lo = lx // BIN - gbx0
            by_lo = ly // BIN - gby0
            bx_hi = hx // BIN - gbx0
            by_hi = hy // BIN - gby0
            bins[m, 0] = bx_lo
            bins[m, 1] = by_lo
            bins[m, 2] = bx_hi
            bins[m, 3] = by_hi
            for by in range(by_lo, by_hi + 1):
                for bx in range(bx_lo, bx_hi + 1):
                    counts[by * nbx + bx + 1] += 1
            m += 1
    return m, proj, zs.view(np.uint32), bins, counts


@njit(cache=True, fastmath=False)
def order_by_depth_id(key: np.ndarray, proj: np.ndarray, m: int) -> np.ndarray:
    """Slots ``0..m-1`` sorted by (depth, particle id), stable: the one global blending order.

    An LSD radix sort on the float32 depth bits (positive floats sort like their bit patterns),
    moving keys with their slots so every pass reads sequentially, then an insertion sort by id
    inside each run of equal depth (ties are rare).
    """
    hist = np.zeros((3, 2048), np.int64)
    for k in range(m):
        b = key[k]
        hist[0, b & 2047] += 1
        hist[1, (b >> 11) & 2047] += 1
        hist[2, b >> 22] += 1
    src = np.arange(m).astype(np.int32)
    dst = np.empty(m, np.int32)
    ksrc = key[:m].copy()
    kdst = np.empty(m, np.uint32)
    for p in range(3):
        shift = 11 * p
        skip = False
        for d in range(2048):
            if hist[p, d] == m:
                skip = True
        if skip:
            continue
        pos = np.empty(2048, np.int64)
        acc = 0
        for d in range(2048):
            pos[d] = acc
            acc += hist[p, d]
        for k in range(m):
            b = ksrc[k]
            d = (b >> shift) & 2047
            j = pos[d]
            dst[j] = src[k]
            kdst[j] = b
            pos[d] = j + 1
        src, dst = dst, src
        ksrc, kdst = kdst, ksrc
    id1 = proj.view(np.uint32)
    k = 0
    while k < m:
        e = k + 1
        while e < m and ksrc[e] == ksrc[k]:
            e += 1
        for a in range(k + 1, e):
            s = src[a]
            tie = id1[s, 12]
            b = a - 1
            while b >= k and id1[src[b], 12] > tie:
                src[b + 1] = src[b]
                b -= 1
            src[b + 1] = s
        k = e
    return src


@njit(cache=True, fastmath=False)
def bin_particles(
    position: np.ndarray,
    velocity: np.ndarray,
    radius: np.ndarray,
    colour: np.ndarray,
    ids: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    params: np.ndarray,
    rx0: int,
    ry0: int,
    rx1: int,
    ry1: int,
) -> tuple[Any, ...]:
    """Project, order and bin once: packed records grouped by bin, in (depth, id) order per bin.

    Bins are ``BIN`` pixels square on a grid anchored at the frame origin, covering the region.
    Returns ``(rec, entries, offsets, gbx0, gby0, nbx, nby)``: bin ``b`` (row-major over the
    ``nbx x nby`` bins starting at bin ``(gbx0, gby0)``) owns records
    ``rec[entries[offsets[b]:offsets[b+1]]]``, in (depth, id) order.
    """
    m, proj, key, bins, counts = project(
        position, velocity, radius, colour, ids, starts, ends, params, rx0, ry0, rx1, ry1
    )
    order = order_by_depth_id(key, proj, m)
    gbx0, gby0, nbx, nby = _bin_grid(rx0, ry0, rx1, ry1)
    for b in range(nbx * nby):
        counts[b + 1] += counts[b]
    # Bins hold record numbers, not copies: 4 bytes written per (record, bin) instead of 64,
    # and a bin's records come from a few runs of the Morton-ordered input, so the raster's
    # reads through them stay in cache.
    entries = np.empty(counts[nbx * nby], np.int32)
    fill = counts[:-1].copy()
    for k in range(m):
        s = order[k]
        bx_lo = bins[s, 0]
        bx_hi = bins[s, 2]
        for by in range(bins[s, 1], bins[s, 3] + 1):
            for bx in range(bx_lo, bx_hi + 1):
                b = by * nbx + bx
                entries[fill[b]] = s
                fill[b] += 1
    return proj, entries, counts, gbx0, gby0, nbx, nby


@njit(cache=True, fastmath=False)
def raster(
    rec: np.ndarray,
    entries: np.ndarray,
    offsets: np.ndarray,
    gbx0: int,
    gby0: int,
    nbx: int,
    nby: int,
    ox0: int,
    oy0: int,
    ox1: int,
    oy1: int,
    out_rgba: np.ndarray,
    out_z: np.ndarray,
    out_id: np.ndarray,
    out_v: np.ndarray,
) -> None:
    """Blend the binned records front to back into the outputs covering ``[ox0,ox1) x [oy0,oy1)``.

    ``out_rgba`` is ``(4, h, w)``, ``out_z`` and ``out_id`` ``(h, w)``, ``out_v`` ``(2, h, w)``,
    pre-filled with the empty values. Each pixel sees the records of exactly one bin, in global
    (depth, id) order, so its arithmetic is the same whatever rectangle it is rendered in.
    """
    one = np.float32(1.0)
    h = oy1 - oy0
    w = ox1 - ox0
    trans = np.ones((h, w), np.float32)
    rec_id = rec.view(np.uint32)
    o_r = out_rgba[0]
    o_g = out_rgba[1]
    o_b = out_rgba[2]
    o_a = out_rgba[3]
    o_vx = out_v[0]
    o_vy = out_v[1]
    for by in range(max(oy0 // BIN, gby0), min((oy1 - 1) // BIN, gby0 + nby - 1) + 1):
        wy0 = max(by * BIN, oy0)
        wy1 = min(by * BIN + BIN, oy1)
        for bx in range(max(ox0 // BIN, gbx0), min((ox1 - 1) // BIN, gbx0 + nbx - 1) + 1):
            wx0 = max(bx * BIN, ox0)
            wx1 = min(bx * BIN + BIN, ox1)
            b = (by - gby0) * nbx + (bx - gbx0)
            left = (wy1 - wy0) * (wx1 - wx0)
            for e in range(offsets[b], offsets[b + 1]):
                if e + PREFETCH_AHEAD < entries.size:
                    _prefetch_row(rec, entries[e + PREFETCH_AHEAD])
                j = entries[e]
                # Locals, not rec[j, q] in the pixel loop: the output stores could alias rec
                # as far as LLVM knows, so it would reload every field per pixel.
                sx = rec[j, 0]
                sy = rec[j, 1]
                lx, ly, hx, hy = _bin_range(sx, sy, rec[j, 2], wx0, wy0, wx1, wy1)
                r2 = rec[j, 3]
                inv = rec[j, 4]
                cr = rec[j, 6]
                cg = rec[j, 7]
                cb = rec[j, 8]
                op = rec[j, 9]
                for y in range(ly, hy + 1):
                    dy = np.float32(y + 0.5) - sy
                    dy2 = dy * dy
                    ty = y - oy0
                    for x in range(lx, hx + 1):
                        tx = x - ox0
                        t_now = trans[ty, tx]
                        if t_now < T_MIN:
                            continue
                        dx = np.float32(x + 0.5) - sx
                        d2 = dx * dx + dy2
                        if not d2 < r2:
                            continue
                        t = one - d2 * inv
                        a = op * (t * t)
                        ta = t_now * a
                        o_r[ty, tx] += ta * cr
                        o_g[ty, tx] += ta * cg
                        o_b[ty, tx] += ta * cb
                        o_a[ty, tx] += ta
                        t_new = t_now * (one - a)
                        trans[ty, tx] = t_new
                        if out_id[ty, tx] == 0:
                            out_z[ty, tx] = rec[j, 5]
                            out_id[ty, tx] = rec_id[j, 12]
                            o_vx[ty, tx] = rec[j, 10]
                            o_vy[ty, tx] = rec[j, 11]
                        if t_new < T_MIN:
                            left -= 1
                if left == 0:
                    break

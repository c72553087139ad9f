"""numba kernels of the tile-binned splatting renderer (see ``render.py`` for the image model).

Every kernel is ``@njit(cache=True, fastmath=False)``: ``cache=True`` lets the many Ray worker
processes reuse one compiled copy; ``fastmath=False`` keeps IEEE semantics with no contraction to
fused multiply-add, so a pixel's value depends only on its global coordinates and the ordered list
of particles covering it, never on the tile it was rendered in. The numpy fallback in
``_numpy_kernels.py`` writes the same expressions in the same order.

Importing this module imports numba; ``render.py`` falls back to numpy when that fails.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

BIN = 16
"""Side of the square pixel bins particles are sorted into, anchored at the frame origin."""
T_MIN = np.float32(1e-4)
"""A pixel stops blending once its transmittance drops below this (per pixel, so tile-exact)."""
R_MIN_PX = 0.5
"""Smallest splat radius in pixels, so distant particles still cover their pixel centre."""
R_MAX_PX = 1048576.0
"""Largest splat radius in pixels (2**20), keeping every box finite; far beyond any frame."""
NREC = 12
"""Record fields: sx, sy, r, r2, inv_r2, depth, R, G, B, opacity, velocity x, velocity y."""


@njit(cache=True, fastmath=False)
def box(sx: float, sy: float, r: float) -> tuple[float, float, float, float]:
    """Conservative float64 box of pixel indices a splat may cover (inclusive bounds).

    The pixel test ``d2 < r2`` is the only arbiter of coverage; this box just has to contain
    every pixel that passes it, with margin for float32 rounding of ``r2`` and ``d2``.
    """
    rb = np.float64(r) * 1.00001 + 0.001
    return sx - rb - 0.5, sy - rb - 0.5, sx + rb - 0.5, sy + rb - 0.5


@njit(cache=True, fastmath=False)
def project(
    position: np.ndarray,
    velocity: np.ndarray,
    radius: np.ndarray,
    colour: np.ndarray,
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

    Returns ``(m, idx, sx, sy, r, r2, inv_r2, depth, vx, vy)``; only the first ``m`` are valid.
    """
    total = 0
    for c in range(starts.size):
        total += ends[c] - starts[c]
    idx = np.empty(total, np.int64)
    o_sx = np.empty(total, np.float32)
    o_sy = np.empty(total, np.float32)
    o_r = np.empty(total, np.float32)
    o_r2 = np.empty(total, np.float32)
    o_inv = np.empty(total, np.float32)
    o_z = np.empty(total, np.float32)
    o_vx = np.empty(total, np.float32)
    o_vy = np.empty(total, np.float32)
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
            s_x = hw + f * xc / zc
            s_y = hh - f * yc / zc
            rp = f * np.float64(radius[i]) / zc
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
            idx[m] = i
            o_sx[m] = sx32
            o_sy[m] = sy32
            o_r[m] = r32
            o_r2[m] = np.float32(rp * rp)
            o_inv[m] = np.float32(1.0 / (rp * rp))
            o_z[m] = np.float32(zc)
            o_vx[m] = np.float32(hw + f * xe / ze - s_x)
            o_vy[m] = np.float32(hh - f * ye / ze - s_y)
            m += 1
    return m, idx, o_sx, o_sy, o_r, o_r2, o_inv, o_z, o_vx, o_vy


@njit(cache=True, fastmath=False)
def order_by_depth_id(depth: np.ndarray, ids: np.ndarray, idx: np.ndarray, m: int) -> np.ndarray:
    """Slots ``0..m-1`` sorted by (depth, particle id), stable: the one global blending order.

    An LSD radix sort on the float32 depth bits (positive floats sort like their bit patterns),
    then an insertion sort by id inside each run of equal depth (ties are rare).
    """
    bits = depth.view(np.uint32)
    hist = np.zeros((3, 2048), np.int64)
    for k in range(m):
        b = bits[k]
        hist[0, b & 2047] += 1
        hist[1, (b >> 11) & 2047] += 1
        hist[2, b >> 22] += 1
    src = np.arange(m).astype(np.int32)
    dst = np.empty(m, np.int32)
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
            s = src[k]
            d = (bits[s] >> shift) & 2047
            dst[pos[d]] = s
            pos[d] += 1
        src, dst = dst, src
    k = 0
    while k < m:
        e = k + 1
        while e < m and bits[src[e]] == bits[src[k]]:
            e += 1
        for a in range(k + 1, e):
            s = src[a]
            key = ids[idx[s]]
            b = a - 1
            while b >= k and ids[idx[src[b]]] > key:
                src[b + 1] = src[b]
                b -= 1
            src[b + 1] = s
        k = e
    return src


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
    Returns ``(rec, rec_id, offsets, gbx0, gby0, nbx, nby)``: bin ``b`` (row-major over the
    ``nbx x nby`` bins starting at bin ``(gbx0, gby0)``) owns records ``offsets[b]:offsets[b+1]``.
    """
    m, idx, sx, sy, r, r2, inv, z, vx, vy = project(
        position, velocity, radius, colour, starts, ends, params, rx0, ry0, rx1, ry1
    )
    order = order_by_depth_id(z, ids, idx, m)
    gbx0 = rx0 // BIN
    gby0 = ry0 // BIN
    nbx = (rx1 - 1) // BIN - gbx0 + 1
    nby = (ry1 - 1) // BIN - gby0 + 1
    counts = np.zeros(nbx * nby + 1, np.int64)
    for k in range(m):
        s = order[k]
        lx, ly, hx, hy = _bin_range(sx[s], sy[s], r[s], rx0, ry0, rx1, ry1)
        for by in range(ly // BIN - gby0, hy // BIN - gby0 + 1):
            for bx in range(lx // BIN - gbx0, hx // BIN - gbx0 + 1):
                counts[by * nbx + bx + 1] += 1
    for b in range(nbx * nby):
        counts[b + 1] += counts[b]
    total = counts[nbx * nby]
    rec = np.empty((total, NREC), np.float32)
    rec_id = np.empty(total, np.uint32)
    fill = counts[:-1].copy()
    for k in range(m):
        s = order[k]
        i = idx[s]
        lx, ly, hx, hy = _bin_range(sx[s], sy[s], r[s], rx0, ry0, rx1, ry1)
        for by in range(ly // BIN - gby0, hy // BIN - gby0 + 1):
            for bx in range(lx // BIN - gbx0, hx // BIN - gbx0 + 1):
                b = by * nbx + bx
                j = fill[b]
                fill[b] = j + 1
                rec[j, 0] = sx[s]
                rec[j, 1] = sy[s]
                rec[j, 2] = r[s]
                rec[j, 3] = r2[s]
                rec[j, 4] = inv[s]
                rec[j, 5] = z[s]
                rec[j, 6] = colour[i, 0]
                rec[j, 7] = colour[i, 1]
                rec[j, 8] = colour[i, 2]
                rec[j, 9] = colour[i, 3]
                rec[j, 10] = vx[s]
                rec[j, 11] = vy[s]
                rec_id[j] = ids[i] + np.uint32(1)
    return rec, rec_id, counts, gbx0, gby0, nbx, nby


@njit(cache=True, fastmath=False)
def raster(
    rec: np.ndarray,
    rec_id: np.ndarray,
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
    for by in range(max(oy0 // BIN, gby0), min((oy1 - 1) // BIN, gby0 + nby - 1) + 1):
        wy0 = max(by * BIN, oy0)
        wy1 = min(by * BIN + BIN, oy1)
        for bx in range(max(ox0 // BIN, gbx0), min((ox1 - 1) // BIN, gbx0 + nbx - 1) + 1):
            wx0 = max(bx * BIN, ox0)
            wx1 = min(bx * BIN + BIN, ox1)
            b = (by - gby0) * nbx + (bx - gbx0)
            left = (wy1 - wy0) * (wx1 - wx0)
            for j in range(offsets[b], offsets[b + 1]):
                sx = rec[j, 0]
                sy = rec[j, 1]
                lx, ly, hx, hy = _bin_range(sx, sy, rec[j, 2], wx0, wy0, wx1, wy1)
                r2 = rec[j, 3]
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
                        t = one - d2 * rec[j, 4]
                        a = rec[j, 9] * (t * t)
                        ta = t_now * a
                        out_rgba[0, ty, tx] += ta * rec[j, 6]
                        out_rgba[1, ty, tx] += ta * rec[j, 7]
                        out_rgba[2, ty, tx] += ta * rec[j, 8]
                        out_rgba[3, ty, tx] += ta
                        t_new = t_now * (one - a)
                        trans[ty, tx] = t_new
                        if out_id[ty, tx] == 0:
                            out_z[ty, tx] = rec[j, 5]
                            out_id[ty, tx] = rec_id[j]
                            out_v[0, ty, tx] = rec[j, 10]
                            out_v[1, ty, tx] = rec[j, 11]
                        if t_new < T_MIN:
                            left -= 1
                if left == 0:
                    break

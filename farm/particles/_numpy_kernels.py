"""Pure-numpy fallback of the splatting renderer, used only when numba cannot import or compile.

It writes the image model of ``_model.py`` vectorised, with the same float expressions in the same
order as the numba kernels (projection in float64, per-pixel blending in float32), so images agree
with the numba path to within 1e-6 (ids exactly).
Blending is vectorised over pixels: covering (particle, pixel) fragments are expanded per band of
rows (bounding memory), grouped per pixel in global (depth, id) order, and composited in rounds,
round ``k`` blending every pixel's ``k``-th fragment at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from farm.particles import _model
from farm.particles._model import EXACT_BELOW_PX, LOWPASS_PX2, R_MAX_PX, R_MIN_PX, T_MIN

_FRAGMENT_BUDGET = 2_000_000
"""Fragments expanded at once; a band of rows over budget is split in two."""


@dataclass
class Projected:
    """Visible particles in global (depth, id) order, with their conservative pixel boxes."""

    sx: np.ndarray
    sy: np.ndarray
    inv_re2: np.ndarray
    amp: np.ndarray
    depth: np.ndarray
    colour: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    id1: np.ndarray
    box: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _box(
    sx: np.ndarray, sy: np.ndarray, r: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rb = r.astype(np.float64) * _model.BOX_PAD_REL + _model.BOX_PAD_PX
    sx64 = sx.astype(np.float64)
    sy64 = sy.astype(np.float64)
    return sx64 - rb - 0.5, sy64 - rb - 0.5, sx64 + rb - 0.5, sy64 + rb - 0.5


def project(
    position: np.ndarray,
    velocity: np.ndarray,
    radius: np.ndarray,
    colour: np.ndarray,
    ids: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    params: np.ndarray,
    region: tuple[int, int, int, int],
) -> Projected:
    """Project, cull to the region and sort by (depth, id), as ``_kernels`` does per bin."""
    rx0, ry0, rx1, ry1 = region
    parts = [np.arange(s, e, dtype=np.int64) for s, e in zip(starts, ends, strict=True)]
    idx = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    c0, c1, c2, r0, r1, r2, u0, u1, u2, f0, f1, f2, f, hw, hh, near, far = params.tolist()
    with np.errstate(all="ignore"):
        pos = position[idx].astype(np.float64)
        vel = velocity[idx].astype(np.float64)
        dx = pos[:, 0] - c0
        dy = pos[:, 1] - c1
        dz = pos[:, 2] - c2
        zc = dx * f0 + dy * f1 + dz * f2
        xc = dx * r0 + dy * r1 + dz * r2
        yc = dx * u0 + dy * u1 + dz * u2
        iz = 1.0 / zc
        s_x = hw + f * xc * iz
        s_y = hh - f * yc * iz
        rp = f * radius[idx].astype(np.float64) * iz
        rp = np.where(rp >= R_MIN_PX, rp, R_MIN_PX)
        rp = np.where(rp > R_MAX_PX, R_MAX_PX, rp)
        rr2 = rp * rp  # not r2: that name is the camera's right vector here
        re2 = rr2 + LOWPASS_PX2
        sx32 = s_x.astype(np.float32)
        sy32 = s_y.astype(np.float32)
        re32 = np.sqrt(re2).astype(np.float32)
        bx0, by0, bx1, by1 = _box(sx32, sy32, re32)
        keep = (colour[idx, 3] > 0) & (zc >= near) & (zc <= far)
        keep &= (bx0 <= rx1 - 1) & (bx1 >= rx0) & (by0 <= ry1 - 1) & (by1 >= ry0)
        ex = dx + vel[:, 0]
        ey = dy + vel[:, 1]
        ez = dz + vel[:, 2]
        ze = ex * f0 + ey * f1 + ez * f2
        ze = np.where(ze >= near, ze, near)
        xe = ex * r0 + ey * r1 + ez * r2
        ye = ex * u0 + ey * u1 + ez * u2
        ize = 1.0 / ze
        vx = (hw + f * xe * ize - s_x).astype(np.float32)
        vy = (hh - f * ye * ize - s_y).astype(np.float32)
        inv = (1.0 / re2).astype(np.float32)
    k = np.flatnonzero(keep)
    amp = _amplitude(colour[idx[k], 3], rr2[k], re2[k], sx32[k], sy32[k], re32[k], inv[k])
    depth = zc[k].astype(np.float32)
    pid = ids[idx[k]]
    rank = np.lexsort((pid, depth))
    order = k[rank]
    sel = idx[order]
    return Projected(
        sx=sx32[order],
        sy=sy32[order],
        inv_re2=inv[order],
        amp=amp[rank],
        depth=zc[order].astype(np.float32),
        colour=np.ascontiguousarray(colour[sel], dtype=np.float32),
        vx=vx[order],
        vy=vy[order],
        id1=(ids[sel].astype(np.uint32) + np.uint32(1)).astype(np.uint32),
        box=(bx0[order], by0[order], bx1[order], by1[order]),
    )


def _amplitude(
    opacity: np.ndarray, r2: np.ndarray, re2: np.ndarray, sx: np.ndarray, sy: np.ndarray,
    re: np.ndarray, inv: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """``_model.amplitude_wide`` / ``amplitude_narrow`` for arrays."""
    op = opacity.astype(np.float64)
    amp = (op * (r2 / re2)).astype(np.float32)
    narrow = np.flatnonzero(re < EXACT_BELOW_PX)
    if narrow.size:
        w = _grid_sums(sx[narrow], sy[narrow], re[narrow], inv[narrow])
        deposit = op[narrow] * (_model._THIRD_PI * r2[narrow])
        amp[narrow] = (deposit / w.astype(np.float64)).astype(np.float32)
    return amp


def _grid_sums(sx: np.ndarray, sy: np.ndarray, re: np.ndarray, inv: np.ndarray) -> np.ndarray:
    """``_model.grid_sums``: the same 6 x 6 block, float32 sums in the same order."""
    bx0, by0, _, _ = _box(sx, sy, re)
    x0, y0 = np.ceil(bx0), np.ceil(by0)
    zero = np.float32(0.0)

    def offset2(pixel: np.ndarray, centre: np.ndarray) -> np.ndarray:
        d = (pixel + 0.5).astype(np.float32) - centre
        return d * d

    cols = [offset2(x0 + k, sx) for k in range(6)]
    acc = [np.zeros(sx.size, np.float32) for _ in range(6)]
    for row in range(6):
        e = offset2(y0 + row, sy)
        for k in range(6):
            t = np.float32(1.0) - (cols[k] + e) * inv
            t = np.where(t > zero, t, zero)
            acc[k] += t * t
    c0, c1, c2, c3, c4, c5 = acc
    return ((c0 + c1) + (c2 + c3)) + (c4 + c5)


def raster(
    p: Projected,
    rect: tuple[int, int, int, int],
    out_rgba: np.ndarray,
    out_z: np.ndarray,
    out_id: np.ndarray,
    out_v: np.ndarray,
) -> None:
    """Blend the projected particles into outputs covering ``rect`` (filled with empty values)."""
    ox0, oy0, ox1, oy1 = rect
    bx0, by0, bx1, by1 = p.box
    sel = np.flatnonzero((bx0 <= ox1 - 1) & (bx1 >= ox0) & (by0 <= oy1 - 1) & (by1 >= oy0))
    lx = np.where(bx0[sel] < ox0, ox0, np.ceil(bx0[sel])).astype(np.int64)
    hx = np.where(bx1[sel] > ox1 - 1, ox1 - 1, np.floor(bx1[sel])).astype(np.int64)
    ly = np.where(by0[sel] < oy0, oy0, np.ceil(by0[sel])).astype(np.int64)
    hy = np.where(by1[sel] > oy1 - 1, oy1 - 1, np.floor(by1[sel])).astype(np.int64)
    trans = np.ones(out_z.size, np.float32)
    flat = (
        [out_rgba[c].reshape(-1) for c in range(4)],
        out_z.reshape(-1),
        out_id.reshape(-1),
        [out_v[0].reshape(-1), out_v[1].reshape(-1)],
    )
    bands = [(oy0, oy1)]
    while bands:
        ya, yb = bands.pop()
        inband = np.flatnonzero((ly <= yb - 1) & (hy >= ya))
        cly = np.maximum(ly[inband], ya)
        chy = np.minimum(hy[inband], yb - 1)
        wdt = hx[inband] - lx[inband] + 1
        counts = wdt * (chy - cly + 1)
        if int(counts.sum()) > _FRAGMENT_BUDGET and yb - ya > 1:
            mid = (ya + yb) // 2
            bands += [(mid, yb), (ya, mid)]
            continue
        _blend_band(p, sel[inband], lx[inband], cly, wdt, counts, rect, trans, flat)


def _blend_band(
    p: Projected,
    part: np.ndarray,
    lx: np.ndarray,
    ly: np.ndarray,
    wdt: np.ndarray,
    counts: np.ndarray,
    rect: tuple[int, int, int, int],
    trans: np.ndarray,
    flat: tuple[list[np.ndarray], np.ndarray, np.ndarray, list[np.ndarray]],
) -> None:
    ox0, oy0, ox1, _oy1 = rect
    total = int(counts.sum())
    if total == 0:
        return
    rep = np.repeat(np.arange(part.size), counts)
    off = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    fx = lx[rep] + off % wdt[rep]
    fy = ly[rep] + off // wdt[rep]
    pi = part[rep]
    dx = (fx + 0.5).astype(np.float32) - p.sx[pi]
    dy = (fy + 0.5).astype(np.float32) - p.sy[pi]
    tk = np.float32(1.0) - (dx * dx + dy * dy) * p.inv_re2[pi]
    cov = np.flatnonzero(tk > 0)
    pi, tk = pi[cov], tk[cov]
    pix = (fy[cov] - oy0) * (ox1 - ox0) + (fx[cov] - ox0)
    o = np.argsort(pix, kind="stable")
    pix, pi, tk = pix[o], pi[o], tk[o]
    first = np.ones(pix.size, bool)
    first[1:] = pix[1:] != pix[:-1]
    seg_start = np.flatnonzero(first)
    rank = np.arange(pix.size) - np.repeat(seg_start, np.diff(np.append(seg_start, pix.size)))
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(rank))])
    rgba, z, idv, vel = flat
    one = np.float32(1.0)
    for k in range(bounds.size - 1):
        f = by_rank[bounds[k] : bounds[k + 1]]
        px = pix[f]
        t_now = trans[px]
        alive = t_now >= T_MIN
        f, px, t_now = f[alive], px[alive], t_now[alive]
        q = pi[f]
        t = tk[f]
        a = p.amp[q] * (t * t)
        ta = t_now * a
        for c in range(3):
            rgba[c][px] = rgba[c][px] + ta * p.colour[q, c]
        rgba[3][px] = rgba[3][px] + ta
        trans[px] = t_now * (one - a)
        if k == 0:
            z[px] = p.depth[q]
            idv[px] = p.id1[q]
            vel[0][px] = p.vx[q]
            vel[1][px] = p.vy[q]

"""The image model's per-particle arithmetic, written once (``docs/renderer.md`` derives it).

A particle of projected radius ``r`` pixels (at least ``R_MIN_PX``) deposits a total alpha of
``opacity * pi r² / 3``, the integral of ``opacity * (1 - d²/r²)²``, spread by the same kernel
widened by a pixel-footprint low-pass, ``r_e² = r² + LOWPASS_PX2``: a pixel centre at distance
``d`` from the particle's centre gets ``alpha = a * max(t, 0)²``, ``t = 1 - d²/r_e²``. The peak
``a`` makes the deposit exact at any sub-pixel position for footprints narrower than
``EXACT_BELOW_PX`` (:func:`amplitude_narrow`), and within ``SAMPLING_ERROR`` beyond
(:func:`amplitude_wide`).

Plain Python on scalars, no numba import: ``_kernels.py`` compiles these functions into its
kernels (numba ``register_jitable``), a GPU port can compile them as device functions, and the
numpy fallback (``_numpy_kernels.py``) writes the same expressions vectorised, in the same
order. The raster's pixel loop (``_kernels._blend8``) evaluates :func:`weight` 8 pixels at a
time with the same float32 operations. Units: pixels, in global frame coordinates; pixel
``(i, j)`` is sampled at ``(i + 0.5, j + 0.5)``. Projection is float64, what a pixel computes
float32, so a pixel is the same in every tile.

When this file changes, update ``_kernels.MODEL_DIGEST`` (a test says so): numba's on-disk
cache only notices changes to ``_kernels.py``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

Scalar = float | np.floating[Any]
"""A float64 or float32 scalar: these functions take either, as the kernels pass them."""

R_MIN_PX = 0.5
"""Smallest particle radius in pixels: a particle however small or far, radius 0 included,
deposits at least the coverage of a disc this size (the floor the renderer always had, so far
particles keep their average brightness; they no longer twinkle or vanish)."""
LOWPASS_PX2 = 2.0 / 3.0
"""Squared radius (px²) added to every footprint: ``r_e² = r² + 2/3``, the pixel-footprint
low-pass. The kernel ``(1 - d²/r²)²`` has variance ``r²/8`` per axis, so this adds ``1/12``,
the variance of a one-pixel box filter: the disc convolved with the pixel, to second order (3D
Gaussian splatting adds 0.3 px² to a Gaussian's variance for the same reason). Every point of
the image plane lies within ``sqrt(0.5)`` of a pixel centre, less than the smallest ``r_e``,
``sqrt(0.25 + 2/3) = 0.957``: every particle that projects into the frame covers a pixel."""
LOWPASS_PX = math.sqrt(LOWPASS_PX2)
EXACT_BELOW_PX = 2.5
"""Footprints with ``r_e`` below this are scaled by their exact sum over the pixel grid; wider
ones by the kernel's integral, whose pixel sum is within ``SAMPLING_ERROR`` of it there."""
SAMPLING_ERROR = 0.008
"""Largest relative difference, for ``r_e >= EXACT_BELOW_PX``, between the kernel's sum over
pixel centres and its integral ``pi r_e² / 3``, over all sub-pixel positions (measured on a
grid of 26 x 26 offsets and radii 0.005 px apart; it shrinks as footprints grow: 0.45 % at
3 px, 0.16 % at 4 px). Below 2.5 px it would reach 5 % (20 % near 1.25 px): those are summed."""
R_MAX_PX = 1048576.0
"""Largest radius in pixels (2**20), keeping every box finite; far beyond any frame."""
T_MIN = np.float32(1e-4)
"""A pixel stops blending once its transmittance drops below this (per pixel, so tile-exact)."""
BOX_PAD_REL = 1.00001
BOX_PAD_PX = 0.001
"""A footprint's box has half-width ``r_e * BOX_PAD_REL + BOX_PAD_PX``: more than float32
rounding of ``d²`` and ``1/r_e²`` can move the edge of ``t > 0``, so the box holds every pixel
the kernel covers, and every tile takes every particle that reaches it."""
FOOTPRINT_PAD_PX = R_MIN_PX + LOWPASS_PX
"""``r_e <= r + FOOTPRINT_PAD_PX`` for a projected radius ``r >= 0``: what culls by a bound on
``r`` (the chunk cull in ``render.py``) adds to it."""
_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)
_THIRD_PI = math.pi / 3.0


def footprint(rp: float) -> tuple[float, float]:
    """A projected radius ``rp`` (pixels, float64) -> ``(r², r_e²)``, both float64.

    ``r = clamp(rp, R_MIN_PX, R_MAX_PX)`` is the particle's disc (NaN becomes ``R_MIN_PX``);
    ``r_e`` is that disc widened by the pixel low-pass, the radius of the kernel drawn.
    """
    r = rp if rp >= R_MIN_PX else R_MIN_PX
    if r > R_MAX_PX:
        r = R_MAX_PX
    r2 = r * r
    return r2, r2 + LOWPASS_PX2


def box_radius(re: Scalar) -> float:
    """``r_e`` padded (float64): every pixel centre with ``t > 0`` lies within it."""
    return np.float64(re) * BOX_PAD_REL + BOX_PAD_PX


def box(sx: Scalar, sy: Scalar, re: Scalar) -> tuple[Scalar, Scalar, Scalar, Scalar]:
    """Conservative float64 box of pixel indices a footprint may cover (inclusive bounds)."""
    rb = box_radius(re)
    return sx - rb - 0.5, sy - rb - 0.5, sx + rb - 0.5, sy + rb - 0.5


def weight(dx2: np.float32, dy2: np.float32, inv_re2: np.float32) -> np.float32:
    """``max(t, 0)²`` with ``t = 1 - (dx² + dy²) / r_e²``, from float32 squared offsets: the
    kernel at one pixel centre (covered where ``t > 0``). float32 throughout."""
    t = _ONE - (dx2 + dy2) * inv_re2
    t = t if t > _ZERO else _ZERO
    return t * t


def offset2(pixel: float, centre: np.float32) -> np.float32:
    """Squared float32 offset from a footprint's centre to the centre of pixel index ``pixel``."""
    d = np.float32(pixel + 0.5) - centre
    return d * d


def grid_sums(
    sx: np.ndarray, sy: np.ndarray, re: np.ndarray, inv_re2: np.ndarray, out: np.ndarray, n: int
) -> None:
    """For the first ``n`` footprints (float32 arrays), narrower than ``EXACT_BELOW_PX``: the
    kernel's weights summed over every pixel centre of the infinite grid, what the particle
    deposits at amplitude 1, into ``out`` (float32).

    Such a box spans at most 6 x 6 pixels. Each weight is the raster's own float32 value, over
    a fixed 6 x 6 block from the box's first pixel (pixels outside the disc add 0), summed down
    each column, then across the columns pairwise. Branch-free with no dependence between
    footprints, so the loop runs 8 footprints to a SIMD instruction (about 2 ms for 2M).
    """
    for i in range(n):
        s = sx[i]
        u = sy[i]
        iv = inv_re2[i]
        bx0, by0, _, _ = box(s, u, re[i])
        x0 = np.ceil(bx0)
        y0 = np.ceil(by0)
        a0 = offset2(x0, s)
        a1 = offset2(x0 + 1.0, s)
        a2 = offset2(x0 + 2.0, s)
        a3 = offset2(x0 + 3.0, s)
        a4 = offset2(x0 + 4.0, s)
        a5 = offset2(x0 + 5.0, s)
        c0 = c1 = c2 = c3 = c4 = c5 = _ZERO
        for row in range(6):
            e = offset2(y0 + row, u)
            c0 += weight(a0, e, iv)
            c1 += weight(a1, e, iv)
            c2 += weight(a2, e, iv)
            c3 += weight(a3, e, iv)
            c4 += weight(a4, e, iv)
            c5 += weight(a5, e, iv)
        out[i] = ((c0 + c1) + (c2 + c3)) + (c4 + c5)


def deposit(opacity: np.float32, r2: float) -> float:
    """The particle's total alpha, ``opacity * pi r² / 3`` (float64): the integral of
    ``opacity * (1 - d²/r²)²`` over the plane, its coverage before the low-pass."""
    return np.float64(opacity) * (_THIRD_PI * r2)


def amplitude_wide(opacity: np.float32, r2: float, re2: float) -> np.float32:
    """Peak alpha ``a`` of a footprint at least ``EXACT_BELOW_PX`` wide: the deposit over the
    widened kernel's integral ``pi r_e² / 3``, i.e. ``opacity * r² / r_e²``."""
    return np.float32(np.float64(opacity) * (r2 / re2))


def amplitude_narrow(deposit: float, grid_sum: np.float32) -> np.float32:
    """Peak alpha ``a`` of a narrower footprint: the deposit over its exact pixel sum
    (:func:`grid_sums`), so its total alpha is the deposit wherever it lands. Never above the
    opacity: the smallest pixel sum, over every radius and position, exceeds the deposit."""
    return np.float32(deposit / np.float64(grid_sum))

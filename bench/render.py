"""Benchmark the particle renderer against a plain vectorised numpy splat, on one core.

Full size: 2,000,000 sea-monster particles at 1920x1080, all AOVs. Measures, in the same run:

* ``ms_per_frame``: our whole frame (``render_frame``, warm, median of several runs);
* the baseline: every particle projected with numpy, a fixed 3x3 footprint, ``np.bincount``
  accumulation of RGBA, Z, velocity and a depth-sorted scatter for id (no compositing order);
* ``tiled_ms``: the same frame as 4x4 tiles through ``render_tiles`` (binned once, the tiles
  rasterised one after another), and for information ``rect_ms``: 16 separate ``render_rect``
  calls, as 16 farm tasks would run them;
* ``peak_whole_mb`` and ``peak_tile_mb``: working memory (``tracemalloc`` peak: every array the
  renderer allocates, numpy's and numba's, the input frame excluded) of a 3,000,000-particle
  1920x1080 frame rendered whole, and of the largest of its 4x4 tiles each rendered alone with
  ``render_rect`` as a farm task does (``--quick``: 300,000 particles at 960x540).

The last stdout line is the JSON object of the bench contract (shared/README.md).

Usage::

    .venv/bin/python bench/render.py            # full
    .venv/bin/python bench/render.py --quick    # small, under a minute
"""

from __future__ import annotations

import os

# One core, as one farm task gets; must be set before numba is imported.
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse
import functools
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

from farm.particles import (
    Camera,
    ParticleFrame,
    available_backends,
    monster_camera,
    prepare_frame,
    render_frame,
    render_rect,
    render_tiles,
    sea_monster,
)
from farm.vocab import PixelRect


def numpy_splat(
    pf: ParticleFrame, camera: Camera, width: int, height: int
) -> dict[str, np.ndarray]:
    """The straightforward baseline: project all, 3x3 Gaussian footprint, ``np.bincount``."""
    p = camera.projection_params(width, height)
    d = pf.position.astype(np.float64) - p[0:3]
    zc = d @ p[9:12]
    keep = (zc >= p[15]) & (zc <= p[16])
    d, zc = d[keep], zc[keep]
    sx = p[13] + p[12] * (d @ p[3:6]) / zc
    sy = p[14] - p[12] * (d @ p[6:9]) / zc
    e = d + pf.velocity[keep]
    ze = np.maximum(e @ p[9:12], p[15])
    vx = p[13] + p[12] * (e @ p[3:6]) / ze - sx
    vy = p[14] - p[12] * (e @ p[6:9]) / ze - sy
    rpx = np.maximum(p[12] * pf.radius[keep] / zc, 0.5)
    col = pf.colour[keep]
    ids = pf.id[keep]
    npix = width * height
    acc = {k: np.zeros(npix) for k in ("R", "G", "B", "A", "Z", "W", "velocity.X", "velocity.Y")}
    ix0 = np.floor(sx).astype(np.int64)
    iy0 = np.floor(sy).astype(np.int64)
    for oy in (-1, 0, 1):
        for ox in (-1, 0, 1):
            ix, iy = ix0 + ox, iy0 + oy
            ok = (ix >= 0) & (ix < width) & (iy >= 0) & (iy < height)
            pix = (iy * width + ix)[ok]
            dx = ix[ok] + 0.5 - sx[ok]
            dy = iy[ok] + 0.5 - sy[ok]
            w = np.exp(-(dx * dx + dy * dy) / (2 * rpx[ok] ** 2)) * col[ok, 3]
            for c, name in enumerate("RGB"):
                acc[name] += np.bincount(pix, w * col[ok, c], npix)
            acc["A"] += np.bincount(pix, w, npix)
            acc["W"] += np.bincount(pix, w, npix)
            acc["Z"] += np.bincount(pix, w * zc[ok], npix)
            acc["velocity.X"] += np.bincount(pix, w * vx[ok], npix)
            acc["velocity.Y"] += np.bincount(pix, w * vy[ok], npix)
    out: dict[str, np.ndarray] = {
        k: v.reshape(height, width).astype(np.float32) for k, v in acc.items() if k != "W"
    }
    wsum = np.maximum(acc["W"], 1e-12).reshape(height, width)
    for k in ("Z", "velocity.X", "velocity.Y"):
        out[k] = (out[k] / wsum).astype(np.float32)
    idimg = np.zeros(npix, np.uint32)
    far_first = np.argsort(-zc)
    inside = (ix0 >= 0) & (ix0 < width) & (iy0 >= 0) & (iy0 < height)
    order = far_first[inside[far_first]]
    idimg[iy0[order] * width + ix0[order]] = ids[order] + 1  # last write (nearest) wins
    out["id"] = idimg.reshape(height, width)
    return out


def peak_mb(fn: Callable[[], object]) -> float:
    """Peak bytes allocated while ``fn`` runs (numba's allocations are traced too), in MB."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def grid_4x4(width: int, height: int) -> list[PixelRect]:
    return [
        PixelRect(x0=width * i // 4, y0=height * j // 4, x1=width * (i + 1) // 4,
                  y1=height * (j + 1) // 4)
        for j in range(4) for i in range(4)
    ]  # fmt: skip


CPU = next(b for b in available_backends() if b != "cuda")
"""The backend measured: one CPU core, as the contract says (``bench/gpu_check.py`` times GPUs)."""


def memory(count: int, width: int, height: int) -> tuple[float, float]:
    """``(peak_whole_mb, peak_tile_mb)`` for a ``count``-particle frame and its 4x4 tiles."""
    cam = monster_camera()
    pf = prepare_frame(sea_monster(count))
    render_frame(
        pf, cam, width=width, height=height, backend=CPU
    )  # the chunk-hull cache, as a warm worker
    whole = peak_mb(lambda: render_frame(pf, cam, width=width, height=height, backend=CPU))
    tile = max(
        peak_mb(functools.partial(render_rect, pf, cam, width=width, height=height, rect=r))
        for r in grid_4x4(width, height)
    )
    return whole, tile


def median_s(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def speed(count: int, width: int, height: int, runs: int) -> dict[str, float]:
    """Median seconds: ours whole (``ours``), the numpy baseline, 16 tiles binned once and 16
    separate ``render_rect`` calls, all on the same frame in this process."""
    cam = monster_camera()
    t = time.perf_counter()
    pf = prepare_frame(sea_monster(count))
    print(
        f"scene: {count:,} particles prepared in {time.perf_counter() - t:.2f} s", file=sys.stderr
    )
    tiles = grid_4x4(width, height)

    def whole() -> object:
        return render_frame(pf, cam, width=width, height=height, backend=CPU)

    def tiled() -> object:
        return render_tiles(pf, cam, width=width, height=height, rects=tiles, backend=CPU)

    def per_rect() -> object:
        return [
            render_rect(pf, cam, width=width, height=height, rect=r, backend=CPU) for r in tiles
        ]

    whole()  # warm: load or compile the kernels
    return {
        "ours": median_s(whole, runs),
        "base": median_s(lambda: numpy_splat(pf, cam, width, height), max(1, runs // 2 + 1)),
        "tiled": median_s(tiled, runs),
        "rect": median_s(per_rect, max(1, runs // 2 + 1)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="200,000 particles at 960x540")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per measurement (median)")
    args = ap.parse_args()
    count, width, height = (200_000, 960, 540) if args.quick else (2_000_000, 1920, 1080)
    backend = CPU
    s = speed(count, width, height, args.runs)
    print(
        f"backend {backend}: whole {s['ours'] * 1e3:.0f} ms, numpy baseline "
        f"{s['base'] * 1e3:.0f} ms, 16 tiles binned once {s['tiled'] * 1e3:.0f} ms, "
        f"16 render_rect {s['rect'] * 1e3:.0f} ms",
        file=sys.stderr,
    )
    mem_count, mem_w, mem_h = (300_000, 960, 540) if args.quick else (3_000_000, 1920, 1080)
    peak_whole, peak_tile = memory(mem_count, mem_w, mem_h)
    print(
        f"working memory, {mem_count:,} particles at {mem_w}x{mem_h}: whole {peak_whole:.1f} MB, "
        f"largest of 16 tiles {peak_tile:.1f} MB",
        file=sys.stderr,
    )
    result = {
        "bench": "render",
        "ms_per_frame": round(s["ours"] * 1e3, 1),
        "particles_per_s": round(count / s["ours"]),
        "speedup_vs_numpy": round(s["base"] / s["ours"], 2),
        "tiled_ms": round(s["tiled"] * 1e3, 1),
        "tiled_overhead": round(s["tiled"] / s["ours"], 3),
        "rect_ms": round(s["rect"] * 1e3, 1),
        "peak_tile_mb": round(peak_tile, 1),
        "peak_whole_mb": round(peak_whole, 1),
        "numpy_ms": round(s["base"] * 1e3, 1),
        "backend": backend,
        "particles": count,
        "resolution": f"{width}x{height}",
        "memory_particles": mem_count,
        "memory_resolution": f"{mem_w}x{mem_h}",
        "goal": "speedup_vs_numpy >= 7, tiled_overhead <= 1.15, peak_tile_mb <= peak_whole_mb / 3",
        "machine": f"{os.cpu_count()} cores, python {sys.version_info[0]}.{sys.version_info[1]}",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

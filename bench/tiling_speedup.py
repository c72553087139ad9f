"""Tiling speed-up: one 2,000,000-particle 1920x1080 frame as tiles on 2 Ray workers vs untiled.

Baseline (same run): the same frame rendered whole, in this process, on one core. Farm side: a
4x4 grid of tiles, each a Ray task calling the farm's ``render_rect`` on the frame from Ray's
object store (zero-copy), two workers; the tiles are stitched and checked bit for bit against
the whole frame. speedup = untiled time / tiled time (goal >= 1.8 on 2 cores).

Run: ``.venv/bin/python bench/tiling_speedup.py`` (``--quick`` for a small version).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np

from farm.particles.cache import ParticleFrame, prepare_frame
from farm.particles.camera import Camera
from farm.particles.monster import monster_camera, sea_monster
from farm.particles.render import render_frame, render_rect
from farm.vocab import PixelRect
from scheduler.tiles import grid_rects

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def render_tile(
    frame: ParticleFrame, camera: Camera, width: int, height: int, rect: PixelRect
) -> dict[str, np.ndarray]:
    return render_rect(frame, camera, width=width, height=height, rect=rect)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="500k particles at 960x540")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--grid", type=int, default=4, help="tiles per side")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    count, (width, height) = (500_000, (960, 540)) if args.quick else (2_000_000, (1920, 1080))

    import ray

    frame = prepare_frame(sea_monster(count))
    camera = monster_camera()
    rects = grid_rects(width, height, args.grid, args.grid)

    render_frame(frame, camera, width=width, height=height)  # compile / load the kernels
    untiled_runs = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        whole = render_frame(frame, camera, width=width, height=height)
        untiled_runs.append(time.perf_counter() - start)

    ray.init(
        num_cpus=args.workers,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": {"NUMBA_NUM_THREADS": "1"}},
    )
    remote = ray.remote(num_cpus=1, max_retries=0)(render_tile)
    frame_ref = ray.put(frame)
    small = PixelRect(x0=0, y0=0, x1=8, y1=8)
    ray.get(
        [remote.remote(frame_ref, camera, width, height, small) for _ in range(args.workers * 2)]
    )

    tiled_runs = []
    tiles: list[Any] = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        tiles = ray.get([remote.remote(frame_ref, camera, width, height, r) for r in rects])
        stitched = {name: np.empty_like(array) for name, array in whole.items()}
        for rect, pixels in zip(rects, tiles, strict=True):
            for name, array in pixels.items():
                stitched[name][rect.y0 : rect.y1, rect.x0 : rect.x1] = array
        tiled_runs.append(time.perf_counter() - start)
    ray.shutdown()
    for name, array in whole.items():
        if not np.array_equal(array, stitched[name]):
            sys.exit(f"tiled frame differs from the whole frame in channel {name}")

    untiled_s = statistics.median(untiled_runs)
    tiled_s = statistics.median(tiled_runs)
    print(
        f"untiled {untiled_s * 1000:.0f} ms (1 process), tiled {tiled_s * 1000:.0f} ms "
        f"({len(rects)} tiles on {args.workers} Ray workers), bit-identical",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "bench": "tiling_speedup",
                "speedup": round(untiled_s / tiled_s, 3),
                "tiled_s": round(tiled_s, 4),
                "untiled_s": round(untiled_s, 4),
                "workers": args.workers,
                "tiles": len(rects),
                "particles": count,
                "resolution": f"{width}x{height}",
                "goal": "speedup >= 1.8 on 2 cores",
                "machine": f"{os.cpu_count()} cores, python {PYTHON}",
            }
        )
    )


if __name__ == "__main__":
    main()

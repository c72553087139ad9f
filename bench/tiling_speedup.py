"""Tiling speed-up: one 2,000,000-particle 1920x1080 frame as tiles on 2 Ray workers vs untiled.

Both sides are the farm's unit of work, measured in the same run on the same Ray: *untiled* is
one Ray task that renders the whole frame in one worker process and returns its pixels; *tiled*
is a 4x4 grid of Ray tasks (``render_rect``, the frame read zero-copy from Ray's object store)
spread over two workers, returning their pixels. Pixels travel as the farm stores them (RGBA
half, Z / id / velocity 32-bit), on both sides. Both end with every pixel in the driver, so
the ratio is what tiling buys the farm. ``speedup`` = untiled / tiled (goal >= 1.8 on 2 cores).
``speedup_vs_in_process`` also reports the tiled time against ``render_frame`` called in the
driver itself (no Ray, no transfer), the strictest baseline. The tiles are stitched afterwards
(outside the timing: assembly has its own benchmark) and checked bit for bit against the whole.

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

from farm.exr.io import CHANNEL_DTYPES
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
    """A tile's pixels as the farm keeps them: each channel in its EXR storage type."""
    return stored(render_rect(frame, camera, width=width, height=height, rect=rect))


def stored(channels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: a.astype(CHANNEL_DTYPES[name], copy=False) for name, a in channels.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="500k particles at 960x540")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--grid", type=int, default=4, help="tiles per side")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    count, (width, height) = (500_000, (960, 540)) if args.quick else (2_000_000, (1920, 1080))

    import ray

    frame = prepare_frame(sea_monster(count))
    camera = monster_camera()
    rects = grid_rects(width, height, args.grid, args.grid)

    render_frame(frame, camera, width=width, height=height)  # compile / load the kernels
    in_process_runs = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        whole = stored(render_frame(frame, camera, width=width, height=height))
        in_process_runs.append(time.perf_counter() - start)

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

    full = PixelRect(x0=0, y0=0, x1=width, y1=height)
    untiled_runs, tiled_runs = [], []
    tiles: list[Any] = []
    for _ in range(args.repeat):  # interleaved, so drift on a shared machine hits both alike
        start = time.perf_counter()
        ray.get(remote.remote(frame_ref, camera, width, height, full))
        untiled_runs.append(time.perf_counter() - start)
        start = time.perf_counter()
        tiles = ray.get([remote.remote(frame_ref, camera, width, height, r) for r in rects])
        tiled_runs.append(time.perf_counter() - start)
    ray.shutdown()
    stitched = {name: np.empty_like(array) for name, array in whole.items()}
    for rect, pixels in zip(rects, tiles, strict=True):
        for name, array in pixels.items():
            stitched[name][rect.y0 : rect.y1, rect.x0 : rect.x1] = array
    for name, array in whole.items():
        if not np.array_equal(array, stitched[name]):
            sys.exit(f"tiled frame differs from the whole frame in channel {name}")

    untiled_s = statistics.median(untiled_runs)
    tiled_s = statistics.median(tiled_runs)
    in_process_s = statistics.median(in_process_runs)
    print(
        f"untiled {untiled_s * 1000:.0f} ms (1 Ray task), tiled {tiled_s * 1000:.0f} ms "
        f"({len(rects)} tiles on {args.workers} Ray workers), in-process whole frame "
        f"{in_process_s * 1000:.0f} ms; tiles bit-identical to the whole frame",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "bench": "tiling_speedup",
                "speedup": round(untiled_s / tiled_s, 3),
                "tiled_s": round(tiled_s, 4),
                "untiled_s": round(untiled_s, 4),
                "speedup_vs_in_process": round(in_process_s / tiled_s, 3),
                "in_process_s": round(in_process_s, 4),
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

"""Tiling speed-up: one 2,000,000-particle 1920x1080 frame as tiles on 2 Ray workers vs untiled.

Both sides are the farm's unit of work, measured in the same run on the same Ray: *untiled* is
one Ray task that renders the whole frame in one worker process and returns its pixels; *tiled*
is a 4x4 grid of Ray tasks (``render_rect``, the frame read zero-copy from Ray's object store)
spread over two workers, returning their pixels. Pixels travel as the farm stores them (RGBA
half, Z / id / velocity 32-bit), on both sides. Both end with every pixel in the driver, so
the ratio is what tiling buys the farm.

Tiles are sent in the farm's dispatch order (``scheduler.tiles.dispatch_ranks``): centre-out
for a layer's first frame, when nothing is measured yet, and slowest-measured first for the
frames after it. ``speedup`` = untiled / tiled first frame (goal >= 1.8 on 2 cores);
``speedup_measured`` is the same for the following frames, ``speedup_row_major`` for plain
row-major order (what the farm did before it ranked tiles). ``speedup_vs_in_process`` also
reports the first-frame time against ``render_frame`` called in the driver itself (no Ray, no
transfer), the strictest baseline. The tiles are stitched afterwards (outside the timing:
assembly has its own benchmark) and checked bit for bit against the whole.

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
from scheduler.runtime import WORKER_ENV
from scheduler.tiles import TileTimes, dispatch_ranks, plan_tiles

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def render_tile(
    frame: ParticleFrame, camera: Camera, width: int, height: int, rect: PixelRect
) -> dict[str, np.ndarray]:
    """A tile's pixels as the farm keeps them: each channel in its EXR storage type."""
    return stored(render_rect(frame, camera, width=width, height=height, rect=rect))


def stored(channels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: a.astype(CHANNEL_DTYPES[name], copy=False) for name, a in channels.items()}


def timed_tile(
    frame: ParticleFrame, camera: Camera, width: int, height: int, rect: PixelRect
) -> tuple[dict[str, np.ndarray], float]:
    """A tile's pixels and its render time, as the farm's executor reports ``wall_seconds``."""
    start = time.perf_counter()
    pixels = render_tile(frame, camera, width, height, rect)
    return pixels, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="500k particles at 960x540")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--grid", type=int, default=4, help="tiles per side")
    parser.add_argument("--repeat", type=int, default=12)
    args = parser.parse_args()
    count, (width, height) = (500_000, (960, 540)) if args.quick else (2_000_000, (1920, 1080))

    import ray

    frame = prepare_frame(sea_monster(count))
    camera = monster_camera()
    plan = plan_tiles(width, height, cols=args.grid, rows=args.grid, overscan=0)

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
        runtime_env={"env_vars": WORKER_ENV},  # as the farm starts its workers
    )
    remote = ray.remote(num_cpus=1, max_retries=0)(timed_tile)
    frame_ref = ray.put(frame)
    small = PixelRect(x0=0, y0=0, x1=8, y1=8)
    ray.get(
        [remote.remote(frame_ref, camera, width, height, small) for _ in range(args.workers * 2)]
    )

    def send(ranks: list[int]) -> tuple[float, list[tuple[dict[str, np.ndarray], float]]]:
        """All tiles of the frame in the farm's dispatch order; seconds until all are back."""
        order = sorted(range(len(plan.tiles)), key=lambda i: ranks[i])
        start = time.perf_counter()
        refs = [
            remote.remote(frame_ref, camera, width, height, plan.tiles[i].render_rect)
            for i in order
        ]
        results = ray.get(refs)
        elapsed = time.perf_counter() - start
        by_index: list[Any] = [None] * len(order)
        for i, result in zip(order, results, strict=True):
            by_index[i] = result
        return elapsed, by_index

    # A layer's first frame: nothing measured yet, so the farm sends tiles centre-out.
    first_frame = dispatch_ranks(plan, {})
    # Following frames: ranked from the tile times the first frames measured (TileTimes, as the
    # dispatcher keeps them per layer), slowest first.
    times = TileTimes()
    _, tiles = send(first_frame)
    for tile, (_, seconds) in zip(plan.tiles, tiles, strict=True):
        times.record(tile.rect, seconds)
    measured = dispatch_ranks(plan, times.seconds_for(plan))
    row_major = list(range(len(plan.tiles)))
    full = PixelRect(x0=0, y0=0, x1=width, y1=height)
    runs: dict[str, list[float]] = {"untiled": [], "first": [], "measured": [], "row_major": []}
    untiled = [full]
    variants: list[tuple[str, list[int] | None]] = [
        ("untiled", None),
        ("first", first_frame),
        ("measured", measured),
        ("row_major", row_major),
    ]
    for run in range(args.repeat):
        # Interleaved, so drift on a shared machine hits all alike, and rotated, so no variant
        # always runs right after the big untiled transfer.
        for name, ranks in variants[run % 4 :] + variants[: run % 4]:
            if ranks is None:
                start = time.perf_counter()
                ray.get([remote.remote(frame_ref, camera, width, height, r) for r in untiled])
                runs[name].append(time.perf_counter() - start)
                continue
            elapsed, tiles = send(ranks)
            runs[name].append(elapsed)
    ray.shutdown()
    stitched = {name: np.empty_like(array) for name, array in whole.items()}
    for tile, (pixels, _) in zip(plan.tiles, tiles, strict=True):
        r = tile.rect
        for name, array in pixels.items():
            stitched[name][r.y0 : r.y1, r.x0 : r.x1] = array
    for name, array in whole.items():
        if not np.array_equal(array, stitched[name]):
            sys.exit(f"tiled frame differs from the whole frame in channel {name}")

    s = {name: statistics.median(values) for name, values in runs.items()}
    in_process_s = statistics.median(in_process_runs)
    print(
        f"untiled {s['untiled'] * 1000:.0f} ms (1 Ray task); {len(plan.tiles)} tiles on "
        f"{args.workers} Ray workers: first frame (centre-out) {s['first'] * 1000:.0f} ms, "
        f"following frames (slowest measured first) {s['measured'] * 1000:.0f} ms, "
        f"row-major {s['row_major'] * 1000:.0f} ms; in-process whole frame "
        f"{in_process_s * 1000:.0f} ms; tiles bit-identical to the whole frame",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "bench": "tiling_speedup",
                "speedup": round(s["untiled"] / s["first"], 3),
                "speedup_measured": round(s["untiled"] / s["measured"], 3),
                "speedup_row_major": round(s["untiled"] / s["row_major"], 3),
                "tiled_s": round(s["first"], 4),
                "tiled_measured_s": round(s["measured"], 4),
                "untiled_s": round(s["untiled"], 4),
                "speedup_vs_in_process": round(in_process_s / s["first"], 3),
                "in_process_s": round(in_process_s, 4),
                "workers": args.workers,
                "tiles": len(plan.tiles),
                "particles": count,
                "resolution": f"{width}x{height}",
                "goal": "speedup >= 1.8 on 2 cores",
                "machine": f"{os.cpu_count()} cores, python {PYTHON}",
            }
        )
    )


if __name__ == "__main__":
    main()

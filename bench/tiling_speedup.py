"""Tiling speed-up: one 2,000,000-particle 1920x1080 frame as tiles on 2 Ray workers vs untiled.

Both sides are the farm's unit of work, measured in the same run on the same Ray, started with
the farm's worker environment (``scheduler.runtime.WORKER_ENV``): *untiled* is one Ray task
that renders the whole frame in one worker process and returns its pixels; *tiled* is a grid
of Ray tasks (``render_rect``, the frame read zero-copy from Ray's object store) spread over
two workers, returning their pixels. Pixels travel as the farm stores them (RGBA half, Z / id /
velocity 32-bit), on both sides. Both end with every pixel in the driver, so the ratio is what
tiling buys the farm.

Tiles are sent in the farm's dispatch order (``scheduler.tiles.dispatch_ranks``): centre-out
for a layer's first frame, when nothing is measured yet, and slowest-measured first for the
frames after it. ``speedup`` = untiled / tiled, first frame, on the first plan of ``--plans``
(default 4x4, the demo's grid; goal >= 1.8 on 2 cores). ``speedup_measured`` is the same plan
for the following frames, ``speedup_row_major`` in plain row-major order (the farm's order
before it ranked tiles). ``plans`` gives both figures for every plan of ``--plans``, all
interleaved and rotated in one run. ``speedup_vs_in_process`` reports the first-frame time
against ``render_frame`` called in the driver itself (no Ray, no transfer, same environment).
The tiles are stitched afterwards (outside the timing: assembly has its own benchmark) and
checked bit for bit against the whole.

Run: ``.venv/bin/python bench/tiling_speedup.py`` (``--quick`` for a small version,
``--plans 4x4,3x3,2x2,4x1`` for the sweep in docs/performance.md).
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
from scheduler.tiles import TilePlan, TileTimes, dispatch_ranks, plan_tiles

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


Ranks = list[int]


def parse_plans(text: str) -> list[tuple[int, int]]:
    usage = f"--plans {text!r}: write plans as COLSxROWS, comma-separated, e.g. 4x4,3x3"
    try:
        plans = [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",")]
    except ValueError:
        sys.exit(usage)
    if not plans or any(len(p) != 2 or min(p) < 1 for p in plans):
        sys.exit(usage)
    return [(p[0], p[1]) for p in plans]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="500k particles at 960x540")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--plans", default="4x4", help="grids COLSxROWS, the first is headline")
    parser.add_argument("--repeat", type=int, default=12)
    args = parser.parse_args()
    grids = parse_plans(args.plans)
    head = "{}x{}".format(*grids[0])
    count, (width, height) = (500_000, (960, 540)) if args.quick else (2_000_000, (1920, 1080))

    import ray

    frame = prepare_frame(sea_monster(count))
    camera = monster_camera()

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

    Tiles = list[tuple[dict[str, np.ndarray], float]]

    def send(plan: TilePlan, ranks: Ranks) -> tuple[float, Tiles]:
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

    # Each plan three ways: a layer's first frame (nothing measured: centre-out), the frames
    # after it (ranked from the tile times the first frames measured, kept in TileTimes as the
    # dispatcher keeps them per layer), and plain row-major order.
    variants: dict[str, tuple[TilePlan, Ranks]] = {
        "untiled": (plan_tiles(width, height, cols=1, rows=1), [0])
    }
    for cols, rows in grids:
        plan = plan_tiles(width, height, cols=cols, rows=rows, overscan=0)
        first = dispatch_ranks(plan, {})
        times = TileTimes()
        for _ in range(2):
            _, tiles = send(plan, first)
            for tile, (_, seconds) in zip(plan.tiles, tiles, strict=True):
                times.record(tile.rect, seconds)
        name = f"{cols}x{rows}"
        variants[f"{name} first"] = (plan, first)
        variants[f"{name} measured"] = (plan, dispatch_ranks(plan, times.seconds_for(plan)))
        if name == head:
            variants[f"{name} row_major"] = (plan, list(range(len(plan.tiles))))

    names = list(variants)
    runs: dict[str, list[float]] = {name: [] for name in names}
    last: dict[str, list[Any]] = {}
    for run in range(args.repeat):
        # Interleaved, so drift on a shared machine hits all alike, and rotated, so no variant
        # always runs right after the big untiled transfer.
        k = run % len(names)
        for name in names[k:] + names[:k]:
            elapsed, last[name] = send(*variants[name])
            runs[name].append(elapsed)
    ray.shutdown()
    stitched = {name: np.empty_like(array) for name, array in whole.items()}
    head_plan = variants[f"{head} first"][0]
    for tile, (pixels, _) in zip(head_plan.tiles, last[f"{head} first"], strict=True):
        r = tile.rect
        for name, array in pixels.items():
            stitched[name][r.y0 : r.y1, r.x0 : r.x1] = array
    for name, array in whole.items():
        if not np.array_equal(array, stitched[name]):
            sys.exit(f"tiled frame differs from the whole frame in channel {name}")

    s = {name: statistics.median(values) for name, values in runs.items()}
    untiled = s["untiled"]
    in_process_s = statistics.median(in_process_runs)
    plans = {
        f"{c}x{r}": {
            "tiles": c * r,
            "first": round(untiled / s[f"{c}x{r} first"], 3),
            "measured": round(untiled / s[f"{c}x{r} measured"], 3),
        }
        for c, r in grids
    }
    print(
        f"untiled {untiled * 1000:.0f} ms (1 Ray task); {head} on {args.workers} Ray workers: "
        f"first frame (centre-out) {s[f'{head} first'] * 1000:.0f} ms, following frames "
        f"(slowest measured first) {s[f'{head} measured'] * 1000:.0f} ms, row-major "
        f"{s[f'{head} row_major'] * 1000:.0f} ms; in-process whole frame "
        f"{in_process_s * 1000:.0f} ms; tiles bit-identical to the whole frame",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "bench": "tiling_speedup",
                "speedup": plans[head]["first"],
                "speedup_measured": plans[head]["measured"],
                "speedup_row_major": round(untiled / s[f"{head} row_major"], 3),
                "tiled_s": round(s[f"{head} first"], 4),
                "untiled_s": round(untiled, 4),
                "speedup_vs_in_process": round(in_process_s / s[f"{head} first"], 3),
                "in_process_s": round(in_process_s, 4),
                "plans": plans,
                "workers": args.workers,
                "tiles": plans[head]["tiles"],
                "particles": count,
                "resolution": f"{width}x{height}",
                "goal": "speedup >= 1.8 on 2 cores",
                "machine": f"{os.cpu_count()} cores, python {PYTHON}",
            }
        )
    )


if __name__ == "__main__":
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") != WORKER_ENV["MALLOC_MMAP_THRESHOLD_"]:
        # glibc reads its tunables at start: run again with the workers' environment, so the
        # in-process baseline renders with the same allocator settings as the Ray workers.
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **WORKER_ENV})
    main()

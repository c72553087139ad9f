"""Tiling speed-up: one 2,000,000-particle 1920x1080 frame as tiles on 2 Ray workers vs untiled.

Both sides are the farm's unit of work, measured in the same run on the same Ray, started with
the farm's worker environment (``scheduler.runtime.WORKER_ENV``): *untiled* is one Ray task
that renders the whole frame in one worker process and returns its pixels; *tiled* is the
frame's tiles as Ray tasks (``render_rect``, the frame read zero-copy from Ray's object store)
spread over two workers, returning their pixels. Pixels travel as the farm stores them (RGBA
half, Z / id / velocity 32-bit), on both sides. Both end with every pixel in the driver, so the
ratio is what tiling buys the farm.

The headline plan is the farm's balanced tiling (``tiles: {balanced: N}``, N = ``--balanced``,
by default one tile per worker), cut as the dispatcher cuts a particle layer's frames
(``scheduler.tiles.balanced_plan``): where the frame's cost preview from its sim
(``render.cost_preview``, computed here as the sim task computes it) divides evenly.
``speedup`` = untiled / tiled for that plan. ``speedup_learned`` is a balanced layer without a
preview, cut where the tile times measured on its earlier frames divide evenly (the layer's
``TileTimes``; ``--learn`` frames are rendered to learn, equal areas first). ``plans`` gives
fixed grids (``--plans``, e.g. the demo's 4x4) in the farm's dispatch order: centre-out for a
first frame, slowest-measured first after (``first`` / ``measured``). All variants are
interleaved and rotated in one run. ``speedup_vs_in_process`` is the tiled time against
``render_frame`` called in the driver itself (no Ray, no transfer, same environment). The
tiles are stitched afterwards (outside the timing: assembly has its own benchmark) and checked
bit for bit against the whole.

Run: ``.venv/bin/python bench/tiling_speedup.py`` (``--quick`` for a small version,
``--plans 4x4,3x3,2x2,4x1`` for the grid sweep in docs/performance.md).
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
from farm.particles.render import cost_preview, render_frame, render_rect
from farm.vocab import PixelRect
from scheduler.runtime import WORKER_ENV
from scheduler.tiles import (
    CostMap,
    TilePlan,
    TileTimes,
    balanced_plan,
    dispatch_ranks,
    plan_tiles,
)

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
    if any(len(p) != 2 or min(p) < 1 for p in plans):
        sys.exit(usage)
    return [(p[0], p[1]) for p in plans]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="500k particles at 960x540")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--balanced", type=int, help="balanced tiles per frame (default: workers)")
    parser.add_argument("--plans", default="4x4", help="fixed grids COLSxROWS to compare")
    parser.add_argument("--repeat", type=int, default=12)
    parser.add_argument("--learn", type=int, default=4, help="frames rendered to learn the cost")
    args = parser.parse_args()
    grids = parse_plans(args.plans) if args.plans else []
    parts = args.balanced or args.workers
    if parts < 1:
        sys.exit(f"--balanced {parts}: use 1 or more tiles")
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

    def learn(plan: TilePlan, times: TileTimes) -> None:
        """Renders a frame and keeps its tile times, as the dispatcher keeps them per layer."""
        _, tiles = send(plan, dispatch_ranks(plan, times.seconds_for(plan)))
        for tile, (_, seconds) in zip(plan.tiles, tiles, strict=True):
            times.record(tile.rect, seconds)

    # The farm's cut: the sim's cost preview of this frame. And a layer without a preview:
    # equal areas first, then cut from the tile times measured frame by frame.
    preview = CostMap.from_grid(
        width, height, cost_preview(frame, camera, width=width, height=height)
    )
    plan = balanced_plan(width, height, parts, cost=preview)
    times = TileTimes()
    learned = balanced_plan(width, height, parts)
    for _ in range(args.learn):
        learn(learned, times)
        learned = balanced_plan(width, height, parts, cost=times.density(width, height))
    variants: dict[str, tuple[TilePlan, Ranks]] = {
        "untiled": (plan_tiles(width, height, cols=1, rows=1), [0]),
        "balanced": (plan, dispatch_ranks(plan, preview.per_tile(plan))),
        "balanced learned": (learned, dispatch_ranks(learned, times.seconds_for(learned))),
    }
    for cols, rows in grids:
        grid = plan_tiles(width, height, cols=cols, rows=rows, overscan=0)
        grid_times = TileTimes()
        for _ in range(2):
            learn(grid, grid_times)
        name = f"{cols}x{rows}"
        variants[f"{name} first"] = (grid, dispatch_ranks(grid, {}))
        variants[f"{name} measured"] = (grid, dispatch_ranks(grid, grid_times.seconds_for(grid)))

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
    for name in names[1:]:
        stitched = {channel: np.empty_like(array) for channel, array in whole.items()}
        for tile, (pixels, _) in zip(variants[name][0].tiles, last[name], strict=True):
            r = tile.rect
            for channel, array in pixels.items():
                stitched[channel][r.y0 : r.y1, r.x0 : r.x1] = array
        for channel, array in whole.items():
            if not np.array_equal(array, stitched[channel]):
                sys.exit(f"{name}: tiled frame differs from the whole frame in channel {channel}")

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

    def cut(p: TilePlan) -> list[list[int]]:
        return [list(t.rect.as_tuple()) for t in p.tiles]

    print(
        f"untiled {untiled * 1000:.0f} ms (1 Ray task); {parts} balanced tiles on "
        f"{args.workers} Ray workers: {s['balanced'] * 1000:.0f} ms (cut {cut(plan)}), "
        f"learned {s['balanced learned'] * 1000:.0f} ms (cut {cut(learned)}); in-process "
        "whole frame "
        f"{in_process_s * 1000:.0f} ms; "
        + "; ".join(
            f"{n}: first {p['first']}x, measured {p['measured']}x" for n, p in plans.items()
        )
        + "; every tiled frame bit-identical to the whole frame",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "bench": "tiling_speedup",
                "speedup": round(untiled / s["balanced"], 3),
                "speedup_learned": round(untiled / s["balanced learned"], 3),
                "tiled_s": round(s["balanced"], 4),
                "untiled_s": round(untiled, 4),
                "speedup_vs_in_process": round(in_process_s / s["balanced"], 3),
                "in_process_s": round(in_process_s, 4),
                "plans": plans,
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
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") != WORKER_ENV["MALLOC_MMAP_THRESHOLD_"]:
        # glibc reads its tunables at start: run again with the workers' environment, so the
        # in-process baseline renders with the same allocator settings as the Ray workers.
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **WORKER_ENV})
    main()

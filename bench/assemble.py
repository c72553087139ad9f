"""Benchmark: assembling a frame from tile files versus writing the same frame directly.

Assembly (read every tile file, crop the overscan, stitch, write one ZIP scanline EXR) should
cost little more than the final write it cannot avoid: the goal is ``ratio <= 1.3``. Both are
measured in the same run, with the same compression and the same global thread count, so the
ratio holds on a noisy machine.

Usage::

    .venv/bin/python bench/assemble.py            # 3840x2160, 64 tiles (8x8), overscan 8 px
    .venv/bin/python bench/assemble.py --quick    # 1920x1080, 16 tiles: under a minute

The last stdout line is one JSON object (the contract of ``shared/README.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from farm.exr import CHANNEL_DTYPES, assemble_files, write_exr, write_tile
from farm.vocab import Compression
from scheduler.tiles import plan_tiles

CHANNELS = ("R", "G", "B", "A", "Z", "velocity.X", "velocity.Y")
"""RGBA half + Z + velocity, as the particle renderer writes them."""


def synthetic_frame(width: int, height: int, *, seed: int = 1) -> dict[str, np.ndarray]:
    """Smooth gradients plus noise: compresses like a render, not like a flat test card."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]

    def noise(scale: float) -> np.ndarray:
        return (rng.standard_normal((height, width), dtype=np.float32) * scale).astype(np.float32)

    alpha = np.clip(0.5 + 0.5 * np.sin(6.0 * x + 3.0 * y) + noise(0.02), 0.0, 1.0)
    planes = {
        "R": (x * alpha + noise(0.01)),
        "G": (y * alpha + noise(0.01)),
        "B": ((0.5 + 0.5 * np.cos(9.0 * x * y)) * alpha + noise(0.01)),
        "A": alpha,
        "Z": 5.0 + 20.0 * y + np.sin(11.0 * x) + noise(0.05),
        "velocity.X": 3.0 * np.cos(4.0 * y) + noise(0.2) + 0 * x,
        "velocity.Y": -2.0 * np.sin(5.0 * x) + noise(0.2) + 0 * y,
    }
    return {k: np.ascontiguousarray(v, dtype=CHANNEL_DTYPES[k]) for k, v in planes.items()}


def timed_s(fn: Callable[[], None]) -> float:
    """Wall time of one call, in seconds."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and prints its figures; the last line is the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1920x1080, 16 tiles (< 1 min)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side (median)")
    args = parser.parse_args(argv)

    width, height, grid = (1920, 1080, 4) if args.quick else (3840, 2160, 8)
    plan = plan_tiles(width, height, cols=grid, rows=grid, overscan=8)
    frame = synthetic_frame(width, height)

    with tempfile.TemporaryDirectory(prefix="bench-assemble-") as tmp:
        root = Path(tmp)
        tile_files = []
        for tile in plan:
            r = tile.render_rect
            path = root / f"tile{tile.index:03d}.exr"
            write_tile(
                path,
                {k: v[r.y0 : r.y1, r.x0 : r.x1] for k, v in frame.items()},
                render_rect=r,
                width=width,
                height=height,
            )
            tile_files.append((tile, path))
        attributes: dict[str, str | int | float] = {
            "job": "bench",
            "frame": 1,
            "tile_plan": json.dumps(plan.to_json()),
        }

        def assemble() -> None:
            assemble_files(
                tile_files,
                root / "assembled.exr",
                width=width,
                height=height,
                channels=CHANNELS,
                compression=Compression.ZIP,
                attributes=attributes,
            )

        def direct() -> None:
            write_exr(
                root / "direct.exr",
                frame,
                width=width,
                height=height,
                compression=Compression.ZIP,
                attributes=attributes,
            )

        direct()  # warm-up: thread pool start, first-touch of the output pages
        # Interleave the sides so that drift on a shared machine hits both alike.
        assemble_times, direct_times = [], []
        for _ in range(args.repeats):
            assemble_times.append(timed_s(assemble))
            direct_times.append(timed_s(direct))
        assemble_s = statistics.median(assemble_times)
        direct_s = statistics.median(direct_times)

    ratio = assemble_s / direct_s
    print(
        f"{width}x{height}, {plan.describe()}, {', '.join(CHANNELS)}: "
        f"assemble {assemble_s:.3f} s, direct write {direct_s:.3f} s, ratio {ratio:.2f}",
    )
    result = {
        "bench": "assemble",
        "ratio": round(ratio, 3),
        "assemble_s": round(assemble_s, 4),
        "direct_write_s": round(direct_s, 4),
        "goal": "ratio <= 1.3",
        "machine": f"{os.cpu_count()} cores, python {'.'.join(map(str, sys.version_info[:2]))}",
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The GPU path's checks and timing, for a node with a CUDA GPU (issue 23, item 4).

On 2,000,000 sea-monster particles at 1920x1080, all AOVs:

* ``equal``: ``render_frame(backend="cuda")`` against the CPU path (``"numba"``), every channel
  within 1e-5 relative per pixel (``tests/unit/test_particle_render_cuda.assert_close``), and
  whether it is bit for bit (``bitwise``);
* ``mixed_equal``: the frame as 4x4 tiles, alternately from the GPU and the CPU, assembled and
  compared with the CPU's whole frame under the same bound;
* ``gpu_ms_per_frame``: device time of one frame, CUDA events around ``render_region`` (the
  particles already on the device; project, bin, sort, raster and the copies back), median of
  ``--runs``; ``upload_ms`` the particles' copy to the device, ``wall_ms`` one
  ``render_frame(backend="cuda")`` call from the host, copies included;
* ``fma_free``: whether the compiled kernels' PTX holds no ``fma.rn`` (``_cuda_kernels.no_fma``).

Without a GPU it prints one line saying so and exits 2. The last stdout line is the JSON object
of the bench contract (shared/README.md).

Usage::

    .venv/bin/python bench/gpu_check.py            # 2M particles, 1080p
    .venv/bin/python bench/gpu_check.py --quick    # 200,000 particles, 960x540
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

# The equality checks and tile helpers are the unit tests' own, so both check the same thing.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _no_gpu() -> str | None:
    """Why this machine cannot run the checks, or None."""
    try:
        from numba import cuda
        from numba.core import config
    except ImportError as exc:
        return f"numba.cuda does not import ({exc})"
    if config.ENABLE_CUDASIM:
        return "NUMBA_ENABLE_CUDASIM is set; unset it to time a real GPU"
    try:
        if not cuda.is_available():
            return "no CUDA GPU or driver found by numba"
    except Exception as exc:  # a broken driver is the same answer: nothing to check here
        return f"CUDA unavailable ({exc})"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="200,000 particles at 960x540")
    ap.add_argument("--runs", type=int, default=10, help="timed frames (median)")
    args = ap.parse_args()
    why = _no_gpu()
    if why is not None:
        print(f"gpu_check: no GPU here: {why}; run this on a GPU node", file=sys.stderr)
        sys.exit(2)

    from numba import cuda

    from farm.particles import (
        _cuda_kernels,
        monster_camera,
        prepare_frame,
        render_frame,
        render_rect,
        sea_monster,
    )
    from farm.particles.render import _arrays, _chunk_ranges

    # By name: the tests are not part of the type-checked tree.
    tpr = importlib.import_module("tests.unit.test_particle_render")
    assemble, even_grid = tpr.assemble, tpr.even_grid
    assert_close = importlib.import_module("tests.unit.test_particle_render_cuda").assert_close

    count, width, height = (200_000, 960, 540) if args.quick else (2_000_000, 1920, 1080)
    cam = monster_camera()
    pf = prepare_frame(sea_monster(count))
    device = cuda.get_current_device().name
    device = device.decode() if isinstance(device, bytes) else str(device)

    cpu = render_frame(pf, cam, width=width, height=height, backend="numba")
    t = time.perf_counter()
    gpu = render_frame(pf, cam, width=width, height=height, backend="cuda")
    first_s = time.perf_counter() - t  # compiles the kernels
    failures = []
    try:
        assert_close(gpu, cpu, "whole frame")
    except AssertionError as exc:
        failures.append(str(exc))
    bitwise = all(np.array_equal(gpu[k], cpu[k], equal_nan=True) for k in cpu)

    rects = even_grid(width, height, 4, 4)
    mixed = [
        render_rect(pf, cam, width=width, height=height, rect=r,
                    backend="cuda" if (k + k // 4) % 2 == 0 else "numba")
        for k, r in enumerate(rects)
    ]  # fmt: skip
    try:
        assert_close(assemble(mixed, rects, width, height), cpu, "mixed-device tiles")
    except AssertionError as exc:
        failures.append(str(exc))

    ptx = "".join(
        "".join(k.inspect_asm().values())
        for k in (_cuda_kernels.project_kernel, _cuda_kernels.raster_kernel)
    )
    fma_free = "fma.rn" not in ptx

    arrs = _arrays(pf)
    params = cam.projection_params(width, height)
    region = (0, 0, width, height)
    starts, ends, _ = _chunk_ranges(pf, params, region)
    t = time.perf_counter()
    dev = _cuda_kernels.upload(arrs)
    cuda.synchronize()
    upload_ms = (time.perf_counter() - t) * 1e3
    times = []
    for _ in range(args.runs):
        start, stop = cuda.event(), cuda.event()
        start.record()
        _cuda_kernels.render_region(dev, starts, ends, params, region)
        stop.record()
        stop.synchronize()
        times.append(cuda.event_elapsed_time(start, stop))
    walls = []
    for _ in range(max(1, args.runs // 2)):
        t = time.perf_counter()
        render_frame(pf, cam, width=width, height=height, backend="cuda")
        walls.append(time.perf_counter() - t)
    gpu_ms = statistics.median(times)
    for line in failures:
        print(f"FAIL {line}", file=sys.stderr)
    print(
        f"{device}: {gpu_ms:.2f} ms device time per frame, upload {upload_ms:.1f} ms, "
        f"first call {first_s:.1f} s; equal {not failures}, bitwise {bitwise}, fma-free {fma_free}",
        file=sys.stderr,
    )
    result = {
        "bench": "gpu_check",
        "gpu_ms_per_frame": round(gpu_ms, 3),
        "upload_ms": round(upload_ms, 2),
        "wall_ms": round(statistics.median(walls) * 1e3, 1),
        "equal": not failures,
        "mixed_equal": not any(f.startswith("mixed") for f in failures),
        "bitwise": bitwise,
        "fma_free": fma_free,
        "device": device,
        "particles": count,
        "resolution": f"{width}x{height}",
        "goal": "<= 5 ms device time for 2M 1080p; equal to the CPU within 1e-5 relative",
        "machine": f"{os.cpu_count()} cores, python {sys.version_info[0]}.{sys.version_info[1]}",
    }
    print(json.dumps(result))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

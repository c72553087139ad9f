"""Dispatch throughput: trivial tiles through the whole farm vs raw Ray tasks, in the same run.

*Farm*: an embedded farm (local Ray, SQLite, the API served over HTTP, the dispatcher in its
background thread exactly as ``farm server`` runs it). Jobs of ``noop`` tiles are submitted
through the API with the SDK; the clock stops when the API reports every job done, so it covers
submission, planning, every state committed, results collected, usage rows written and frames
rolled up. *Raw Ray*: the same number of Ray tasks running the farm's own ``run_tile`` on the
same noop tile task, all submitted at once and gathered with ``ray.get``, on the same Ray.
The farm sends tiles it measured short several to a Ray task (``scheduler.dispatch.batches``),
so it can beat that baseline; *raw Ray batched* (``run_tiles`` on 64 tiles a task, the farm's
largest batch) is printed beside it as the floor: what is left of the farm's own cost.

Scenarios: one job of ``--tiles`` tiles (the headline ``tiles_per_s`` and ``ratio``), 20 jobs
of 250 tiles from 5 studios submitted together (``*_many``), and one job each of 1,000 and
20,000 tiles, to show the rate does not fall as the job grows. Each job is 50 tiles per frame
(a 10x5 grid), so frames are planned, rolled up and finished as a render layer's are.

Run: ``.venv/bin/python bench/dispatch.py`` (``--quick`` for a small version).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from farm import schemas
from farm.camera import Camera
from farm.settings import Settings
from farm.states import TERMINAL
from farm.vocab import LayerKind, PixelRect, Role
from scheduler.embedded import EmbeddedFarm
from scheduler.executors.base import TileTask, run_tile, run_tiles
from studio_client import Client

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
TILES_PER_FRAME = 50


def noop_spec(shot_id: int, tiles: int, name: str) -> schemas.JobSpec:
    frames = max(1, tiles // TILES_PER_FRAME)
    return schemas.JobSpec(
        name=name,
        shot_id=shot_id,
        frames=schemas.FrameRange(first=1, last=frames),
        resolution=schemas.Resolution(width=640, height=320),
        camera=Camera(position=(0, 0, 10), look_at=(0, 0, 0)),
        layers=(
            schemas.LayerSpec(
                name="work",
                kind=LayerKind.NOOP,
                pool="cpu",
                tiles=schemas.TilingSpec(cols=10, rows=5, overscan=0),
            ),
        ),
    )


def studio_token(farm: EmbeddedFarm, name: str) -> str:
    from farm.db import queries

    with farm.context.db.session() as session:
        studio = queries.create_studio(session, name)
        _, token = queries.create_user(session, studio, f"td-{secrets.token_hex(3)}", Role.TD)
    return token


def run_farm(farm: EmbeddedFarm, jobs: list[tuple[str, int]]) -> float:
    """Submit ``(studio token, tiles)`` jobs through the API; seconds until all are done."""
    clients: dict[str, tuple[Client, int]] = {}
    for token, _ in jobs:
        if token not in clients:
            client = Client(farm.url, token, timeout_s=120)
            show = client.create_show(f"bench{secrets.token_hex(3)}")
            shot = client.create_shot(show.id, "sh010", sequence="sq010")
            clients[token] = (client, shot.id)
    started = time.perf_counter()
    submitted: dict[str, list[int]] = {}
    for i, (token, tiles) in enumerate(jobs):
        client, shot_id = clients[token]
        job = client.submit(noop_spec(shot_id, tiles, f"noop{i}"))
        submitted.setdefault(token, []).append(job.id)
    waiting = {token: set(ids) for token, ids in submitted.items()}
    while any(waiting.values()):
        time.sleep(0.05)
        for token, ids in waiting.items():
            if not ids:
                continue
            client, _ = clients[token]
            for summary in client.jobs():
                if summary.id in ids and summary.state in TERMINAL:
                    if summary.state != "done":
                        raise RuntimeError(f"job {summary.id} ended {summary.state}")
                    ids.discard(summary.id)
    elapsed = time.perf_counter() - started
    for client, _ in clients.values():
        client.close()
    return elapsed


def run_raw(tiles: int, per_task: int = 1) -> float:
    """The same noop tile task as ``tiles`` raw Ray tasks of ``run_tile``, all at once, or
    ``per_task`` tiles to a task of ``run_tiles`` (the farm's batches, without the farm)."""
    import ray

    from farm.storage import DiskStore

    store = ray.put(DiskStore(Path(tempfile.mkdtemp(prefix="delta-raw-"))))
    options = {"num_cpus": 1, "resources": {"pool:cpu": 1}, "max_retries": 0}
    single = ray.remote(run_tile).options(**options)
    batch = ray.remote(run_tiles).options(**options)
    rect = PixelRect(x0=0, y0=0, x1=64, y1=64)
    started = time.perf_counter()
    tasks = [
        TileTask(
            tile_id=i,
            attempt=1,
            job_id=1,
            layer="work",
            kind=LayerKind.NOOP,
            frame=1 + i // TILES_PER_FRAME,
            index=i % TILES_PER_FRAME,
            width=640,
            height=320,
            rect=rect,
            render_rect=rect,
            layer_spec={},
            camera={},
        )
        for i in range(tiles)
    ]
    if per_task == 1:
        results = ray.get([single.remote(task, store) for task in tasks])
    else:
        refs = [
            batch.remote(tuple(tasks[i : i + per_task]), store) for i in range(0, tiles, per_task)
        ]
        results = [r for rs in ray.get(refs) for r in rs]
    elapsed = time.perf_counter() - started
    assert all(r.ok for r in results)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--tiles", type=int, default=5000, help="tiles of the headline job")
    args = parser.parse_args()
    tiles = 1000 if args.quick else args.tiles
    sizes = {"1k": 500 if args.quick else 1000, "20k": 2000 if args.quick else 20_000}
    many_jobs, many_tiles = (10, 100) if args.quick else (20, 250)
    home = Path(tempfile.mkdtemp(prefix="delta-bench-dispatch-"))
    settings = Settings(home=home)
    figures: dict[str, float | int | str] = {}
    with EmbeddedFarm(settings) as farm:
        tokens = [studio_token(farm, f"studio{i}") for i in range(1, 6)]
        run_farm(farm, [(tokens[0], 100)])  # warm the workers and the API
        run_raw(200)
        raw_s = run_raw(tiles)
        raw_batched_s = run_raw(tiles, per_task=64)
        farm_s = run_farm(farm, [(tokens[0], tiles)])
        many = [(tokens[i % 5], many_tiles) for i in range(many_jobs)]
        raw_many_s = run_raw(many_jobs * many_tiles)
        farm_many_s = run_farm(farm, many)
        for label, size in sizes.items():
            figures[f"tiles_per_s_{label}"] = round(size / run_farm(farm, [(tokens[1], size)]), 1)
        print(
            f"farm: {tiles} tiles in {farm_s:.2f} s ({tiles / farm_s:.0f}/s); raw Ray "
            f"{raw_s:.2f} s ({tiles / raw_s:.0f}/s); many: farm {farm_many_s:.2f} s, raw "
            f"{raw_many_s:.2f} s; raw Ray batched 64 a task {raw_batched_s:.2f} s",
            file=sys.stderr,
        )
    result = {
        "bench": "dispatch",
        "tiles_per_s": round(tiles / farm_s, 1),
        "ratio": round(farm_s / raw_s, 3),
        "farm_s": round(farm_s, 3),
        "raw_ray_s": round(raw_s, 3),
        "raw_ray_batched_s": round(raw_batched_s, 3),
        "ratio_vs_batched": round(farm_s / raw_batched_s, 3),
        "tiles": tiles,
        "tiles_per_s_many": round(many_jobs * many_tiles / farm_many_s, 1),
        "ratio_many": round(farm_many_s / raw_many_s, 3),
        **figures,
        "goal": "tiles_per_s >= 1000 and ratio <= 1.5 (also for 20 jobs x 250 tiles from 5 "
        "studios); the rate does not fall from 1k to 20k tiles",
        "machine": f"{os.cpu_count()} cpus, python {PYTHON}",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

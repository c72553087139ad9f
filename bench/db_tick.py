"""A whole dispatcher tick against the database at farm scale (``db_tick_ms_median``).

The farm of ``bench/planner.py``: 10,000 hosts in 3 pools (272,000 slots), 138 studios with
quotas, two licences, 2,000 jobs whose tiles keep the farm full with about 100,000 more
pending. The real :class:`~scheduler.dispatch.dispatcher.Dispatcher` runs its real ticks on the
real database (SQLite, and PostgreSQL when ``FARM_TEST_PG_URL`` or ``--pg`` names one): it
reads new jobs and terms, applies finished attempts (usage rows, rollups, events), activates
frames, plans with fair share and commits the picks RUNNING in one transaction.

Only Ray is replaced, at its boundary: 272,000 tasks cannot run on a 2-core machine, so the
pools' capacity is declared, a submitted tile is recorded instead of sent, and each tick about
1.5 % of the tiles in flight finish (successful results built as an executor builds them).
What Ray costs per tile is measured on its own, against raw Ray, by ``bench/dispatch.py``.
The cold tick is a fresh farm's first; ``fill_s`` the time until every slot is taken (frames
are planned and slots filled in bounded batches per tick). Steady ticks are measured on the
full farm.

Run: ``.venv/bin/python bench/db_tick.py [--quick] [--pg URL]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from sqlalchemy import insert, select, text

from farm import schemas
from farm.camera import Camera
from farm.db import models as m
from farm.db import queries
from farm.db.pools import sync_pools
from farm.db.session import Database
from farm.pool_config import FarmConfig, PoolSpec
from farm.storage import DiskStore
from farm.vocab import LayerKind, Role
from scheduler.dispatch.dispatcher import Dispatcher
from scheduler.dispatch.results import InFlight
from scheduler.executors.base import TileResult, TileTask

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
FULL: dict[str, Any] = {
    "hosts": {"cpu": (8_000, 32), "h100": (1_500, 8), "ascend": (500, 8)},
    "jobs": 2_000,
}
QUICK: dict[str, Any] = {
    "hosts": {"cpu": (800, 32), "h100": (150, 8), "ascend": (50, 8)},
    "jobs": 200,
}
STUDIOS = 138
FINISH_PER_TICK = 0.015


class BoundaryDispatcher(Dispatcher):
    """The real dispatcher with Ray replaced at its boundary (see the module docstring)."""

    capacity: dict[str, float]
    finish_share = FINISH_PER_TICK
    """Share of the tiles in flight that finish each tick."""

    def _read_capacity(self) -> None:
        self._capacity = dict(self.capacity)
        self._device_pools = set(self.capacity)

    def _send(self, flight: InFlight, task: TileTask) -> Any:
        return _Sent(task)

    def _gather(self, *, timeout_s: float) -> list[tuple[Any, InFlight]]:
        count = round(len(self._in_flight) * self.finish_share)
        refs = list(self._in_flight)[:count]  # oldest first
        return [(ref, self._in_flight[ref]) for ref in refs]

    def _cancel(self, ref: Any) -> None:
        ref.cancelled = True

    def _result(self, ref: Any, flight: InFlight) -> TileResult:
        task = ref.task
        return TileResult(
            tile_id=task.tile_id,
            attempt=task.attempt,
            ok=not ref.cancelled,
            node="node-0001",
            wall_seconds=30.0,
            cpu_seconds=29.0,
        )


class _Sent:
    """A tile recorded as sent (stands for Ray's object ref)."""

    def __init__(self, task: TileTask) -> None:
        self.task = task
        self.cancelled = False


def build_farm(url: str, size: dict[str, Any], seed: int = 1) -> tuple[Database, Path]:
    """Studios, quotas, licences and jobs enough to fill the pools and leave ~100,000 pending."""
    rng = random.Random(seed)
    db = Database(url)
    if url.startswith("postgresql"):
        with db.engine.begin() as connection:
            m.Base.metadata.drop_all(connection)
            connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    db.migrate()
    hosts = size["hosts"]
    config = FarmConfig(
        pools=tuple(
            PoolSpec(
                name=name,
                accelerator={"cpu": "cpu", "h100": "nvidia-h100", "ascend": "ascend-910b"}[name],
                cores_per_node=slots,
                memory_gb=512,
                accelerators_per_node=0 if name == "cpu" else 8,
                accelerator_memory_gb=0 if name == "cpu" else 64,
                price_per_node_hour=1.0,
                backfill=name == "h100",
            )
            for name, (_, slots) in hosts.items()
        ),
        licences={"houdini": 400, "nuke": 150},
    )
    capacity = sum(n * slots for n, slots in hosts.values())
    pending_wanted = capacity + 100_000 * size["jobs"] // FULL["jobs"]
    per_job = max(50, pending_wanted // size["jobs"])
    with db.session() as session:
        sync_pools(session, config)
        users = []
        for i in range(STUDIOS):
            studio = queries.create_studio(session, f"studio{i:03d}")
            user, _ = queries.create_user(session, studio, "td", Role.TD)
            show = queries.create_show(session, studio.id, schemas.ShowCreate(name="show"))
            shot = queries.create_shot(
                session, studio.id, show.id, schemas.ShotCreate(name="sh010", sequence="sq")
            )
            users.append((user, shot.id))
            draw = rng.random()
            for name, (count, slots) in hosts.items():
                if draw < 0.10:
                    quota = {"weight": rng.choice((2.0, 3.0))}
                elif draw < 0.20:
                    quota = {"guarantee": count * slots // 200}
                elif draw < 0.25:
                    quota = {"ceiling": count * slots // 20}
                else:
                    continue
                session.execute(insert(m.Quota).values(studio_id=studio.id, pool=name, **quota))
        sizes = [rng.paretovariate(1.2) for _ in users]
        for j in range(size["jobs"]):
            user, shot_id = rng.choices(users, weights=sizes)[0]
            kind = rng.choices(("cpu", "h100", "ascend"), weights=(80, 15, 5))[0]
            requirements: dict[str, Any] = {}
            if kind != "cpu":
                accelerator = "nvidia-h100" if kind == "h100" else "ascend-910b"
                requirements = {"accelerator": accelerator, "accelerator_count": 1}
            if rng.random() < 0.05:
                requirements["licences"] = [rng.choice(("houdini", "nuke"))]
            frames = max(1, -(-per_job // 50))
            spec = schemas.JobSpec.model_validate(
                {
                    "name": f"job{j}",
                    "shot_id": shot_id,
                    "priority": rng.choice((30, 50, 50, 70)),
                    "frames": {"first": 1, "last": frames},
                    "resolution": {"width": 640, "height": 320},
                    "camera": Camera(position=(0, 0, 10), look_at=(0, 0, 0)).model_dump(),
                    "layers": [
                        {
                            "name": "work",
                            "kind": LayerKind.NOOP,
                            "requirements": requirements,
                            "tiles": {"cols": 10, "rows": 5, "overscan": 0},
                        }
                    ],
                }
            )
            queries.submit_job(session, user, spec)
    return db, Path(tempfile.mkdtemp(prefix="delta-dbtick-"))


def measure(url: str, *, quick: bool, ticks: int) -> dict[str, Any]:
    """Cold tick, then ``ticks`` steady ticks; milliseconds."""
    size = QUICK if quick else FULL
    built = time.perf_counter()
    db, scratch = build_farm(url, size)
    build_s = time.perf_counter() - built
    BoundaryDispatcher.capacity = {
        name: float(count * slots) for name, (count, slots) in size["hosts"].items()
    }
    dispatcher = BoundaryDispatcher(db, DiskStore(scratch / "blobs"), scratch / "out", queue_s=0)
    started = time.perf_counter()
    dispatcher.tick()
    cold_ms = (time.perf_counter() - started) * 1000
    filling = 0  # ticks until the farm is full: frames planned and slots filled in batches
    dispatcher.finish_share = 0.0
    while dispatcher.tick() and filling < 500:
        filling += 1
    fill_s = time.perf_counter() - started
    dispatcher.finish_share = FINISH_PER_TICK
    times = []
    for _ in range(ticks):
        started = time.perf_counter()
        dispatcher.tick()
        times.append((time.perf_counter() - started) * 1000)
    with db.session() as session:
        pending = session.scalar(
            select(text("count(*)")).select_from(m.Tile).where(m.Tile.state == "pending")
        )
        running = session.scalar(
            select(text("count(*)")).select_from(m.Tile).where(m.Tile.state == "running")
        )
    db.dispose()
    return {
        "db_tick_ms_median": round(statistics.median(times), 1),
        "db_tick_ms_max": round(max(times), 1),
        "db_cold_tick_ms": round(cold_ms, 1),
        "fill_s": round(fill_s, 1),
        "fill_ticks": filling + 1,
        "pending_tiles": pending,
        "running_tiles": running,
        "finished_per_tick": round(running * FINISH_PER_TICK),
        "build_s": round(build_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the farm")
    parser.add_argument("--pg", default=os.environ.get("FARM_TEST_PG_URL"), help="PostgreSQL URL")
    parser.add_argument("--ticks", type=int, default=20)
    args = parser.parse_args()
    import ray

    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    home = Path(tempfile.mkdtemp(prefix="delta-dbtick-"))
    result: dict[str, Any] = {"bench": "db_tick"}
    result["sqlite"] = measure(f"sqlite:///{home / 'farm.db'}", quick=args.quick, ticks=args.ticks)
    if args.pg:
        result["postgresql"] = measure(args.pg, quick=args.quick, ticks=args.ticks)
    result["db_tick_ms_median"] = result["sqlite"]["db_tick_ms_median"]
    result["goal"] = "db_tick_ms_median <= 250"
    result["machine"] = f"{os.cpu_count()} cpus, python {PYTHON}"
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Submitting the largest job the API allows: how long the call takes, and how long any other
writer waits for the database meanwhile.

*Farm*: an embedded farm (local Ray, SQLite, the API over HTTP, the dispatcher running in its
thread, as ``farm server`` runs it). The job is the largest spec allowed: 100,000 frames of
three layers (``sim`` -> ``render`` cut 4x4 -> ``comp``, as ``noop`` layers so nothing renders),
submitted with the SDK. While it is submitted, and for ``--after`` seconds after (the dispatcher
writes frames and plans tiles then), another thread commits one small row every 5 ms, as the
API does for another studio, and times each commit: ``write_lock_max_s`` is the longest.

*Baseline*, in the same run: the same 300,000 frame rows written eagerly in one transaction
(what storing a job used to do, in one bulk statement instead of ORM rows): ``eager_write_s``.

Run: ``.venv/bin/python bench/submit.py`` (``--quick``: 10,000 frames).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from sqlalchemy import insert

from farm import schemas
from farm.camera import Camera
from farm.db import models as m
from farm.db.frames import insert_frames
from farm.db.session import Database
from farm.settings import Settings
from farm.vocab import LayerKind, Role
from scheduler.embedded import EmbeddedFarm
from studio_client import Client

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def largest_spec(shot_id: int, frames: int) -> schemas.JobSpec:
    noop = LayerKind.NOOP
    return schemas.JobSpec(
        name="largest",
        shot_id=shot_id,
        frames=schemas.FrameRange(first=1, last=frames),
        resolution=schemas.Resolution(width=1920, height=1080),
        camera=Camera(position=(0, 0, 10), look_at=(0, 0, 0)),
        layers=(
            schemas.LayerSpec(name="sim", kind=noop, pool="cpu"),
            schemas.LayerSpec(
                name="render",
                kind=noop,
                pool="cpu",
                depends_on=("sim",),
                tiles=schemas.TilingSpec(cols=4, rows=4, overscan=0),
            ),
            schemas.LayerSpec(name="comp", kind=noop, pool="cpu", depends_on=("render",)),
        ),
    )


class Writer(threading.Thread):
    """Commits one small row every 5 ms and keeps the slowest commit seen while ``measuring``."""

    def __init__(self, db: Database, studio_id: int) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.studio_id = studio_id
        self.measuring = threading.Event()
        self.done = threading.Event()
        self.worst_s = 0.0
        self.commits = 0

    def run(self) -> None:
        while not self.done.is_set():
            started = time.perf_counter()
            with self.db.session() as session:
                session.execute(
                    insert(m.Event).values(studio_id=self.studio_id, kind="bench", payload={})
                )
            took = time.perf_counter() - started
            if self.measuring.is_set():
                self.worst_s = max(self.worst_s, took)
                self.commits += 1
            time.sleep(0.005)


def eager_write_s(frames: int) -> float:
    """The baseline: every frame row of the job in one transaction, one bulk statement each."""
    home = Path(tempfile.mkdtemp(prefix="delta-bench-submit-eager-"))
    db = Database(f"sqlite:///{home / 'farm.db'}")
    db.migrate()
    from farm.db import queries

    with db.session() as session:
        queries.ensure_default_pools(session)
        studio = queries.create_studio(session, "eager")
        user, _ = queries.create_user(session, studio, "td", Role.TD)
        show = queries.create_show(session, studio.id, schemas.ShowCreate(name="show"))
        shot = queries.create_shot(
            session, studio.id, show.id, schemas.ShotCreate(name="sh010", sequence="sq010")
        )
        job = queries.submit_job(session, user, largest_spec(shot.id, 1))
        layer_ids = [layer.id for layer in job.layers]
        job_id = job.id
    started = time.perf_counter()
    with db.session() as session:
        for layer_id in layer_ids:
            insert_frames(
                session.connection(),
                job_id=job_id,
                layer_id=layer_id,
                numbers=range(2, frames + 2),
            )
    elapsed = time.perf_counter() - started
    db.dispose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 frames")
    parser.add_argument("--after", type=float, default=3.0, help="seconds measured after")
    args = parser.parse_args()
    frames = 10_000 if args.quick else schemas.MAX_FRAMES_PER_JOB
    home = Path(tempfile.mkdtemp(prefix="delta-bench-submit-"))
    with EmbeddedFarm(Settings(home=home)) as farm:
        from farm.db import queries

        with farm.context.db.session() as session:
            studio = queries.create_studio(session, "nimble")
            _, token = queries.create_user(session, studio, "td", Role.TD)
            other = queries.create_studio(session, "rival")
            other_id = other.id
        with Client(farm.url, token, timeout_s=300) as client:
            show = client.create_show(f"bench{secrets.token_hex(3)}")
            shot = client.create_shot(show.id, "sh010", sequence="sq010")
            spec = largest_spec(shot.id, frames)
            writer = Writer(farm.context.db, other_id)
            writer.start()
            time.sleep(0.2)
            writer.measuring.set()
            started = time.perf_counter()
            job = client.submit(spec)
            submit_s = time.perf_counter() - started
            time.sleep(args.after)
            writer.measuring.clear()
            writer.done.set()
            writer.join()
            detail = client.job(job.id)
            written = sum(len(layer.frames) for layer in detail.layers)
            client.cancel(job.id, wait_s=30)
    eager_s = eager_write_s(frames)
    print(
        f"submit {frames:,} frames x 3 layers: {submit_s:.3f} s; other writer's slowest commit "
        f"{writer.worst_s:.3f} s over {writer.commits} commits; frame rows after "
        f"{args.after:.0f} s: {written:,}; eager write of every frame row: {eager_s:.3f} s",
        file=sys.stderr,
    )
    result = {
        "bench": "submit",
        "submit_s": round(submit_s, 3),
        "write_lock_max_s": round(writer.worst_s, 3),
        "eager_write_s": round(eager_s, 3),
        "ratio": round(submit_s / eager_s, 3),
        "frames": frames,
        "layers": 3,
        "frame_rows_after": written,
        "goal": "submit_s <= 1 and write_lock_max_s <= 0.5 for the largest job the API allows",
        "machine": f"{os.cpu_count()} cpus, python {PYTHON}",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Short tiles go to Ray in batches, each tile still its own attempt (``dispatch.batches``).

Through the real dispatcher on local Ray and the database: what a batch must never change is what
the farm records per tile (state, attempts, usage, events), nor what stopping one tile does to the
others.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select, text

from farm.db import models as m
from farm.db.session import Database
from scheduler.dispatch.dispatcher import Dispatcher
from tests.conftest import Farm
from tests.factories import make_studio
from tests.integration.test_fair_share_farm import job_tiles, noop_job, tick_until

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]


def per_tile_records(db: Database, job_id: int) -> tuple[Counter[int], Counter[int]]:
    """Usage rows and ``done`` events per tile of ``job_id``."""
    with db.session() as session:
        usage = Counter(
            session.scalars(select(m.UsageRecord.tile_id).where(m.UsageRecord.job_id == job_id))
        )
        done = Counter(
            tile_id
            for payload in session.scalars(
                select(m.Event.payload).where(m.Event.kind == "tiles", m.Event.job_id == job_id)
            )
            for tile_id, state, _ in payload["tiles"]
            if state == "done"
        )
    return usage, done


def a_queued_batch(
    farm: Farm, studio: str, hold_s: float = 0.004
) -> tuple[Database, int, Dispatcher, tuple[Any, ...]]:
    """A job of 400 short tiles on a dispatcher ticked until batches are in flight, and the
    batch sent last (it still waits in Ray's queue behind the others)."""
    db, store, out = farm
    job_id = noop_job(db, make_studio(db, studio), cols=40, rows=10, hold_s=hold_s)
    dispatcher = Dispatcher(db, store, out)
    tick_until(dispatcher, lambda: bool(dispatcher._siblings), timeout_s=30)
    return db, job_id, dispatcher, list(dispatcher._siblings.values())[-1]


def test_short_tiles_run_in_batches_and_each_keeps_its_own_attempt(farm: Farm) -> None:
    db, store, out = farm
    job_id = noop_job(db, make_studio(db, "tiny"), cols=30, rows=10, hold_s=0.0)
    dispatcher = Dispatcher(db, store, out)
    dispatcher.run_until_done([job_id], timeout_s=60)

    tiles = job_tiles(db, job_id)
    assert len(tiles) == 300
    assert dispatcher.batched_tiles > 0, "no tile went in a batch"
    assert all(t.state == "done" and t.attempts == 1 for t in tiles)
    assert all(t.node for t in tiles)
    usage, done = per_tile_records(db, job_id)
    ids = {t.id: 1 for t in tiles}
    assert usage == ids  # one usage record per attempt, batched or not
    assert done == ids  # one done event per tile


def test_long_tiles_are_never_batched(farm: Farm) -> None:
    db, store, out = farm
    job_id = noop_job(db, make_studio(db, "slow"), cols=6, rows=1, hold_s=0.05)
    dispatcher = Dispatcher(db, store, out)
    dispatcher.run_until_done([job_id], timeout_s=60)
    assert dispatcher.batched_tiles == 0
    assert all(t.state == "done" for t in job_tiles(db, job_id))


def test_stopping_one_tile_of_a_batch_brings_the_others_back_uncounted(farm: Farm) -> None:
    db, job_id, dispatcher, batch = a_queued_batch(farm, "stopped")
    # Stop one of the batch's tiles as a rush preemption does.
    stopped = dispatcher._in_flight[batch[0]]
    stopped.preempted = "a rush job needed the slot"
    dispatcher._cancel(batch[0])
    siblings = {dispatcher._in_flight[ref].tile.id for ref in batch[1:]}
    assert siblings and all(dispatcher._in_flight[ref].preempted for ref in batch)
    dispatcher.run_until_done([job_id], timeout_s=60)

    tiles = {t.id: t for t in job_tiles(db, job_id)}
    assert all(t.state == "done" and t.attempts == 1 for t in tiles.values())
    for tile_id in siblings | {stopped.tile.id}:
        assert tiles[tile_id].preemptions == 1, tiles[tile_id]
    usage, done = per_tile_records(db, job_id)
    assert done == {tile_id: 1 for tile_id in tiles}
    # A preempted attempt is never an attempt: one usage record per tile, its successful one.
    assert usage == {tile_id: 1 for tile_id in tiles}


def test_times_written_in_bulk_are_stored_as_the_orm_stores_them(farm: Farm) -> None:
    """The dispatcher's bulk writes (``dispatch.commit``) format times themselves on SQLite; a
    decorated time column (``UTCDateTime``) once slipped past them to sqlite3's own adapter,
    stored as ``...+00:00`` beside the ORM's form (and cost 11,000 calls a tick at scale)."""
    db, store, out = farm
    job_id = noop_job(db, make_studio(db, "clock"), cols=4, rows=1, hold_s=0.0)
    Dispatcher(db, store, out).run_until_done([job_id], timeout_s=60)
    form = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")
    with db.session() as session:
        raw = [
            *session.execute(text("SELECT started_at, finished_at FROM tiles")).all(),
            *session.execute(text("SELECT finished_at, finished_at FROM usage_records")).all(),
            *session.execute(text("SELECT created_at, created_at FROM events")).all(),
        ]
        submitted = session.get_one(m.Job, job_id).created_at
    assert raw and all(form.match(value) for row in raw for value in row), raw[:3]
    for tile in job_tiles(db, job_id):
        assert tile.started_at is not None and tile.finished_at is not None
        assert tile.started_at.tzinfo is not None
        assert submitted <= tile.started_at <= tile.finished_at


def settled(dispatcher: Dispatcher) -> None:
    """Nothing left held: slots, usage weights, batches."""
    assert not dispatcher._in_flight and not dispatcher._siblings and not dispatcher._by_tile
    assert all(n == 0 for n in dispatcher._running.values())
    assert all(abs(v) < 1e-9 for v in dispatcher._busy.values())


def test_a_lost_batch_costs_no_attempt_and_its_layer_stops_batching(farm: Farm) -> None:
    import ray

    db, job_id, dispatcher, batch = a_queued_batch(farm, "crashy")
    ray.cancel(batch[0], force=True)  # as if its worker died: the farm did not stop it
    layer = dispatcher._in_flight[batch[0]].tile.frame.layer
    lost_ids = {dispatcher._in_flight[ref].tile.id for ref in batch}
    tick_until(dispatcher, lambda: layer.batch_lost, timeout_s=30)
    batched = dispatcher.batched_tiles
    dispatcher.run_until_done([job_id], timeout_s=60)

    tiles = {t.id: t for t in job_tiles(db, job_id)}
    assert all(t.state == "done" and t.attempts == 1 for t in tiles.values())
    assert all(tiles[i].preemptions == 1 for i in lost_ids)
    assert dispatcher.batched_tiles == batched  # one task a tile from then on
    settled(dispatcher)


def test_a_reload_with_batches_in_flight_loses_nothing(farm: Farm) -> None:
    db, job_id, dispatcher, _ = a_queued_batch(farm, "reload", hold_s=0.002)
    dispatcher._resync()  # as after a failed commit
    dispatcher.run_until_done([job_id], timeout_s=60)
    assert all(t.state == "done" and t.attempts == 1 for t in job_tiles(db, job_id))
    settled(dispatcher)


def test_a_layer_of_long_tiles_keeps_its_own_short_queue_beside_batches(farm: Farm) -> None:
    db, store, out = farm
    short = noop_job(db, make_studio(db, "short"), cols=50, rows=20, hold_s=0.0)
    dispatcher = Dispatcher(db, store, out)
    tick_until(dispatcher, lambda: dispatcher.batched_tiles > 0, timeout_s=30)
    long = noop_job(db, make_studio(db, "long"), cols=12, rows=1, hold_s=0.05)
    seen: list[tuple[int, int]] = []  # (its tiles in flight, the pool's queue)

    def sample() -> None:
        for lb in dispatcher._layers.values():
            if lb.job.id == long:
                seen.append((lb.in_flight, dispatcher._target("cpu")))

    tick_until(
        dispatcher,
        lambda: [t.state for t in job_tiles(db, long)] == ["done"] * 12,
        timeout_s=60,
        each=sample,
    )
    assert any(pool > 50 for _, pool in seen)  # the pool's queue was a batched one meanwhile
    # 2 slots + the queue of 50 ms tiles, about 2: never the pool's queue of short tiles.
    assert max(in_flight for in_flight, _ in seen) <= 5, seen
    dispatcher.run_until_done([short, long], timeout_s=60)
    settled(dispatcher)


def test_a_batch_that_never_came_back_charges_each_tile_its_share_of_the_time(
    farm: Farm,
) -> None:
    import time

    import ray

    db, job_id, dispatcher, batch = a_queued_batch(farm, "shares")
    flights = [dispatcher._in_flight[ref] for ref in batch]
    assert all(f.share == 1 / len(batch) for f in flights)
    ray.cancel(batch[0], force=True)
    results = [dispatcher._result(ref, f) for ref, f in zip(batch, flights, strict=True)]
    now = time.monotonic()
    for flight, result in zip(flights, results, strict=True):
        assert not result.ok
        # Its share of the batch's time, not the whole of it once per tile.
        assert 0 <= result.wall_seconds <= (now - flight.started) * flight.share + 1e-6
    dispatcher.run_until_done([job_id], timeout_s=60)
    assert all(t.state == "done" and t.attempts == 1 for t in job_tiles(db, job_id))


def test_a_job_cancelled_while_its_tiles_run_in_batches_ends_cancelled_losing_nothing(
    farm: Farm,
) -> None:
    from fastapi.testclient import TestClient

    from farm.api.app import create_app
    from farm.api.context import FarmContext

    db, store, out = farm
    who = make_studio(db, "canceller")
    job_id = noop_job(db, who, cols=40, rows=10, hold_s=0.004)
    dispatcher = Dispatcher(db, store, out)
    tick_until(dispatcher, lambda: len(dispatcher._siblings) > 10, timeout_s=30)
    with TestClient(create_app(FarmContext(db=db, store=store, output_root=out))) as api:
        assert api.post(f"/jobs/{job_id}/cancel", headers=who.headers).status_code == 202
    dispatcher.run_until_done([job_id], timeout_s=60)

    tiles = job_tiles(db, job_id)
    states = {t.state for t in tiles}
    assert states <= {"done", "cancelled"} and "cancelled" in states
    assert all(t.attempts <= 1 for t in tiles)  # a stopped batch counted nothing
    usage, _ = per_tile_records(db, job_id)
    assert all(usage[t.id] == 1 for t in tiles if t.state == "done")
    settled(dispatcher)


class Refusing:
    """Stands for Ray refusing a batch's task (a submission that raises)."""

    def options(self, **_: object) -> Refusing:
        return self

    def remote(self, *_: object) -> object:
        raise RuntimeError("Ray refused the task")


def test_a_batch_ray_refuses_is_a_failed_attempt_for_each_tile(farm: Farm) -> None:
    db, store, out = farm
    job_id = noop_job(db, make_studio(db, "refused"), cols=40, rows=10, hold_s=0.0)
    dispatcher = Dispatcher(db, store, out, max_attempts=2)
    dispatcher._batch_remote = Refusing()
    dispatcher.run_until_done([job_id], timeout_s=60)

    tiles = job_tiles(db, job_id)
    failed = [t for t in tiles if t.state == "failed"]
    assert failed, "no tile went in a batch"
    assert all(t.attempts == 2 and "refused" in (t.reason or "") for t in failed)
    assert {t.state for t in tiles} == {"done", "failed"}  # tiles sent alone ran
    settled(dispatcher)

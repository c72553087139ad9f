"""Render sessions through the real dispatcher on local Ray (issue 20): a session that dies
loses only its current tile; idle sessions serve their studio's next job, hand their cores to
other work at once, and stop after ``KEEP_S``; a cancel stops the sessions running a job."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from farm.api.app import create_app
from farm.api.context import FarmContext
from farm.db import models as m
from scheduler.dispatch import sessions as session_pool
from scheduler.dispatch.dispatcher import Dispatcher
from tests.conftest import Farm
from tests.factories import StudioUser, make_studio
from tests.integration.test_fair_share_farm import (
    job_row,
    job_tiles,
    noop_job,
    running_count,
    tick_until,
)
from tests.invariants import assert_tiles_accounted

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]


def session_processes(running: bool = False) -> list[int]:
    """PIDs of render-session actors (``ray::TileSession``; ``.run`` while running a tile)."""
    title = b"ray::TileSession.run" if running else b"ray::TileSession"
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(title):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_a_session_killed_mid_tile_loses_only_that_tile(farm: Farm) -> None:
    db, store, out = farm
    who = make_studio(db, "nimble")
    job_id = noop_job(db, who, cols=6, hold_s=0.6, execution="session")
    dispatcher = Dispatcher(db, store, out)
    deadline = time.monotonic() + 60
    while not (victims := session_processes(running=True)):
        dispatcher.tick()
        assert time.monotonic() < deadline, "no session started a tile"
    os.kill(victims[0], signal.SIGKILL)
    dispatcher.run_until_done([job_id], timeout_s=120)

    assert job_row(db, job_id).state == "done"
    tiles = job_tiles(db, job_id)
    # The tile it was running paid one attempt; the one queued behind it had not started.
    assert sum(t.attempts - t.forgiven for t in tiles) == len(tiles) + 1
    assert sum(t.preemptions for t in tiles) <= session_pool.DEPTH - 1
    assert_tiles_accounted(db, job_id)
    dispatcher.stop()


def wait_for_no_session_process() -> None:
    deadline = time.monotonic() + 30
    while session_processes():
        assert time.monotonic() < deadline, "a stopped session's process lives on"
        time.sleep(0.2)


def test_idle_sessions_serve_the_studios_next_job_then_stop(
    farm: Farm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session costs a process and its warm-up (0.9 s here): one started per layer made a
    16-tile frame 5x slower with sessions than with stateless tasks."""
    db, store, out = farm
    who = make_studio(db, "nimble")
    first = noop_job(db, who, cols=8, hold_s=0.05, execution="session")
    dispatcher = Dispatcher(db, store, out)
    dispatcher.run_until_done([first], timeout_s=60)
    pool = dispatcher._sessions
    assert pool is not None and 1 <= pool.created <= 2  # 8 tiles, 2 slots: sessions reused
    started = pool.created
    second = noop_job(db, who, cols=8, hold_s=0.05, execution="session")
    dispatcher.run_until_done([second], timeout_s=60)
    assert pool.created == started, "the studio's next job started sessions of its own"
    monkeypatch.setattr(session_pool, "KEEP_S", 0.2)
    tick_until(dispatcher, lambda: len(pool) == 0, timeout_s=10)
    wait_for_no_session_process()
    assert_tiles_accounted(db, first)
    assert_tiles_accounted(db, second)


def test_an_idle_session_hands_its_core_to_other_work_at_once(
    farm: Farm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Idle sessions hold their cores in Ray: another studio's tiles must not queue behind
    them until they time out, while the studio's own stateless tiles use them as warm
    workers. Sessions are never shared by studios."""
    monkeypatch.setattr(session_pool, "KEEP_S", 600.0)
    db, store, out = farm
    nimble, rival = make_studio(db, "nimble"), make_studio(db, "rival")
    dispatcher = Dispatcher(db, store, out)
    jobs = [noop_job(db, nimble, cols=4, hold_s=0.05, execution="session")]
    dispatcher.run_until_done(jobs[-1:], timeout_s=60)
    pool = dispatcher._sessions
    assert pool is not None and len(pool) >= 1
    jobs.append(noop_job(db, rival, cols=2, hold_s=0.5))
    dispatcher.run_until_done(jobs[-1:], timeout_s=60)
    assert len(pool) == 0, "idle sessions kept the cores another studio's tiles needed"
    wait_for_no_session_process()

    jobs.append(noop_job(db, nimble, cols=2, hold_s=0.05, execution="session"))
    dispatcher.run_until_done(jobs[-1:], timeout_s=60)
    started, alive = pool.created, len(pool)
    jobs.append(noop_job(db, nimble, cols=2, hold_s=0.05))
    dispatcher.run_until_done(jobs[-1:], timeout_s=60)
    assert (pool.created, len(pool)) == (started, alive), "its own tiles stopped its sessions"
    jobs.append(noop_job(db, rival, cols=2, hold_s=0.05, execution="session"))
    dispatcher.run_until_done(jobs[-1:], timeout_s=60)
    assert pool.created > started, "the rival studio ran on nimble's sessions"
    for job_id in jobs:
        assert job_row(db, job_id).state == "done"
        assert_tiles_accounted(db, job_id)
    dispatcher.stop()


def cancel(farm: Farm, who: StudioUser, job_id: int) -> None:
    """Cancel ``job_id`` through the API, as its studio (the dispatcher applies it)."""
    db, store, out = farm
    with TestClient(create_app(FarmContext(db=db, store=store, output_root=out))) as api:
        assert api.post(f"/jobs/{job_id}/cancel", headers=who.headers).status_code == 202


def test_cancelling_a_tile_queued_on_a_session_spares_the_tile_it_runs(farm: Farm) -> None:
    """A session serves its studio's jobs in turn: job ``b``'s tiles wait on the sessions
    behind job ``a``'s running ones. Cancelling ``b`` used to stop those sessions and charge
    ``a``'s running tiles a failed attempt."""
    db, store, out = farm
    who = make_studio(db, "nimble")
    a = noop_job(db, who, cols=2, hold_s=1.5, execution="session")
    b = noop_job(db, who, cols=2, hold_s=1.5, execution="session")
    dispatcher = Dispatcher(db, store, out)
    tick_until(dispatcher, lambda: running_count(db, b) > 0, timeout_s=60)
    assert running_count(db, a) == 2  # b's tiles sit queued behind them
    cancel(farm, who, b)
    dispatcher.run_until_done([a, b], timeout_s=60)
    assert job_row(db, b).state == "cancelled"
    assert job_row(db, a).state == "done"
    assert all(t.state == "done" and t.attempts == 1 for t in job_tiles(db, a))
    assert_tiles_accounted(db, a)
    assert_tiles_accounted(db, b)
    dispatcher.stop()


def test_cancel_stops_the_sessions_running_a_job(farm: Farm) -> None:
    db, store, out = farm
    who = make_studio(db, "nimble")
    job_id = noop_job(db, who, cols=8, hold_s=2.0, execution="session")
    dispatcher = Dispatcher(db, store, out)
    tick_until(dispatcher, lambda: bool(session_processes(running=True)), timeout_s=60)
    cancel(farm, who, job_id)
    dispatcher.run_until_done([job_id], timeout_s=60)
    assert job_row(db, job_id).state == "cancelled"
    assert {t.state for t in job_tiles(db, job_id)} == {"cancelled"}
    assert_tiles_accounted(db, job_id)
    with db.session() as session:
        walls = list(session.scalars(select(m.UsageRecord.wall_seconds)))
    # Two tiles ran on the two slots; the ones queued behind them on their sessions never
    # started, and cost nothing (they were billed their time in the queue).
    assert sum(w > 0 for w in walls) <= 2 < len(walls), walls
    deadline = time.monotonic() + 30
    while session_processes(running=True):  # stopped at once, not after the 2 s tile
        dispatcher.tick()
        assert time.monotonic() < deadline
    dispatcher.stop()

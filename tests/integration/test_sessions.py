"""Render sessions through the real dispatcher on local Ray (issue 20): a session that dies
loses only its current tile; sessions stop when their layer has no more work or is cancelled."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from farm.db import models as m
from scheduler.dispatch import sessions as session_pool
from scheduler.dispatch.dispatcher import Dispatcher
from tests.conftest import Farm
from tests.factories import make_studio
from tests.integration.test_fair_share_farm import job_row, job_tiles, noop_job, tick_until
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


def test_sessions_stop_when_their_layer_has_no_more_work(farm: Farm) -> None:
    db, store, out = farm
    who = make_studio(db, "nimble")
    job_id = noop_job(db, who, cols=8, hold_s=0.05, execution="session")
    dispatcher = Dispatcher(db, store, out)
    dispatcher.run_until_done([job_id], timeout_s=60)
    pool = dispatcher._sessions
    assert pool is not None and pool.created <= 3  # 8 tiles, 2 slots: sessions were reused
    tick_until(dispatcher, lambda: len(pool) == 0, timeout_s=10)
    deadline = time.monotonic() + 30
    while session_processes():
        assert time.monotonic() < deadline, "a stopped session's process lives on"
        time.sleep(0.2)
    assert_tiles_accounted(db, job_id)


def test_cancel_stops_the_sessions_running_a_job(farm: Farm) -> None:
    from fastapi.testclient import TestClient

    from farm.api.app import create_app
    from farm.api.context import FarmContext

    db, store, out = farm
    who = make_studio(db, "nimble")
    job_id = noop_job(db, who, cols=8, hold_s=2.0, execution="session")
    dispatcher = Dispatcher(db, store, out)
    tick_until(dispatcher, lambda: bool(session_processes(running=True)), timeout_s=60)
    with TestClient(create_app(FarmContext(db=db, store=store, output_root=out))) as api:
        assert api.post(f"/jobs/{job_id}/cancel", headers=who.headers).status_code == 202
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

"""An attempt that runs out of memory is retried with more (issue 20): twice the memory each
time, up to what a node of its pool offers, each retry one attempt with its reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from farm.db import models as m
from farm.db.session import Database
from farm.pool_config import DEFAULT_FARM_CONFIG
from farm.storage import DiskStore
from farm.vocab import Requirements
from scheduler.dispatch.dispatcher import Dispatcher
from scheduler.plan.fit import memory_share
from tests.factories import make_studio
from tests.integration.test_fair_share_farm import job_row, job_tiles, noop_job
from tests.invariants import assert_tiles_accounted

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]

CPU = next(p.shape for p in DEFAULT_FARM_CONFIG.pools if p.name == "cpu")
SHARE = memory_share(Requirements(), CPU)  # what one 1-core tile gets first: 4 GiB


def test_out_of_memory_retries_with_twice_the_memory_until_it_fits(
    farm: tuple[Database, DiskStore, Path],
) -> None:
    db, store, out = farm
    who = make_studio(db, "nimble")
    # Fits at the third attempt: 4, 8, then 16 GiB.
    job_id = noop_job(db, who, cols=2, hold_s=0.0, needs_memory_gb=3 * SHARE)
    Dispatcher(db, store, out, max_attempts=3).run_until_done([job_id], timeout_s=120)

    assert job_row(db, job_id).state == "done"
    tiles = job_tiles(db, job_id)
    assert [t.attempts for t in tiles] == [3, 3]
    assert all(t.memory_gb == 4 * SHARE for t in tiles)  # what the attempt that fit had
    with db.session() as session:
        usage = session.execute(
            select(m.UsageRecord.attempt, m.UsageRecord.succeeded).where(
                m.UsageRecord.job_id == job_id
            )
        ).all()
    assert sorted(usage) == [(1, False), (1, False), (2, False), (2, False), (3, True), (3, True)]
    assert_tiles_accounted(db, job_id)


def test_out_of_memory_every_time_fails_the_tile_saying_so(
    farm: tuple[Database, DiskStore, Path],
) -> None:
    db, store, out = farm
    who = make_studio(db, "nimble")
    job_id = noop_job(db, who, cols=1, hold_s=0.0, needs_memory_gb=10_000)
    Dispatcher(db, store, out, max_attempts=2).run_until_done([job_id], timeout_s=120)

    assert job_row(db, job_id).state == "failed"
    (tile,) = job_tiles(db, job_id)
    assert tile.state == "failed" and tile.attempts == 2
    assert tile.reason == f"failed 2 times, the last out of memory with {2 * SHARE:g} GiB"
    assert_tiles_accounted(db, job_id)

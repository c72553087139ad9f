"""The dispatcher's bulk writes on both databases (``scheduler.dispatch.commit``): on
PostgreSQL, big groups of rows go through COPY (a temporary table and one joined UPDATE, or a
COPY straight into the table); what lands must be what the row-by-row path writes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from farm.db import models as m
from farm.db.session import Database
from farm.storage import DiskStore
from scheduler.dispatch import commit
from scheduler.dispatch.dispatcher import Dispatcher
from tests.factories import make_studio
from tests.integration.test_fair_share_farm import job_tiles, noop_job
from tests.invariants import assert_tiles_accounted

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]


def test_a_job_written_in_bulk_lands_as_written_row_by_row(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commit, "COPY_MIN_ROWS", 2)  # every group of two rows or more
    copies: Counter[str] = Counter()
    update_by_copy = commit._update_by_copy

    def counted(*args: object) -> None:
        copies["update"] += 1
        update_by_copy(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(commit, "_update_by_copy", counted)
    job_id = noop_job(db, make_studio(db, "bulk"), cols=20, rows=10, hold_s=0.0)
    dispatcher = Dispatcher(db, DiskStore(tmp_path / "blobs"), tmp_path / "out")
    dispatcher.run_until_done([job_id], timeout_s=120)

    tiles = job_tiles(db, job_id)
    assert len(tiles) == 200
    assert all(t.state == "done" and t.attempts == 1 for t in tiles)
    assert all(t.started_at and t.finished_at and t.started_at <= t.finished_at for t in tiles)
    assert all(t.started_at.tzinfo is not None for t in tiles if t.started_at)
    assert all(t.node and t.pool == "cpu" for t in tiles)
    with db.session() as session:
        usage = Counter(
            session.scalars(select(m.UsageRecord.tile_id).where(m.UsageRecord.job_id == job_id))
        )
        job = session.get_one(m.Job, job_id)
        assert job.state == "done" and job.finished_at is not None
    assert usage == {t.id: 1 for t in tiles}
    assert_tiles_accounted(db, job_id)
    if db.engine.dialect.name == "postgresql":
        assert copies["update"] > 0  # the COPY path ran
    else:
        assert copies["update"] == 0

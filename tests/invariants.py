"""The farm's bookkeeping invariant, checked after every fault and job-control test.

Each tile ends DONE with exactly one successful usage record, or FAILED / CANCELLED with a
reason; and every tile has exactly as many usage records as attempts, numbered 1..attempts
(nothing counted twice, nothing lost).
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select

from farm.db import models as m
from farm.db.session import Database


def assert_tiles_accounted(db: Database, job_id: int) -> None:
    with db.session() as session:
        tiles = list(session.scalars(select(m.Tile).where(m.Tile.job_id == job_id)))
        rows = session.execute(
            select(m.UsageRecord.tile_id, m.UsageRecord.attempt, m.UsageRecord.succeeded).where(
                m.UsageRecord.job_id == job_id
            )
        ).all()
    attempts: dict[int, list[int]] = defaultdict(list)
    successes: dict[int, int] = defaultdict(int)
    for tile_id, attempt, succeeded in rows:
        attempts[tile_id].append(attempt)
        successes[tile_id] += bool(succeeded)
    assert tiles, f"job {job_id} has no tiles"
    for tile in tiles:
        numbers = sorted(attempts[tile.id])
        assert numbers == list(range(1, tile.attempts + 1)), (tile.id, tile.attempts, numbers)
        if tile.state == "done":
            assert successes[tile.id] == 1, (tile.id, successes[tile.id])
        else:
            assert tile.state in ("failed", "cancelled"), (tile.id, tile.state)
            assert successes[tile.id] == 0 and tile.reason, (tile.id, tile.reason)

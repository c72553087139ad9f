"""Attempts lost with their node are forgiven, but not for ever (issue 20's review).

A tile whose every attempt takes its node or render session down looks to Ray like a dying node
(``ActorUnavailableError``, ``NodeDiedError``): forgiving each of those ran it again for ever.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from scheduler.dispatch.dispatcher import Dispatcher
from scheduler.dispatch.results import NODE_LOSSES_FORGIVEN, InFlight
from scheduler.executors.base import TileResult
from tests.conftest import Farm
from tests.factories import make_studio
from tests.integration.test_fair_share_farm import job_row, job_tiles, noop_job

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]


class NodeKiller(Dispatcher):
    """Every attempt of the frame's first tile comes back as lost with its node."""

    def _result(self, ref: Any, flight: InFlight) -> TileResult:
        result = super()._result(ref, flight)
        if flight.tile.index != 0:
            return result
        return replace(result, ok=False, node_lost=True, error="NodeDiedError: node died")


def test_a_tile_that_always_loses_its_node_fails_after_a_few_forgiven_attempts(
    farm: Farm,
) -> None:
    db, store, out = farm
    job_id = noop_job(db, make_studio(db, "doomed"), cols=3, hold_s=0.0)
    dispatcher = NodeKiller(db, store, out, max_attempts=2)
    dispatcher.run_until_done([job_id], timeout_s=60)

    tiles = {t.id: t for t in job_tiles(db, job_id)}
    doomed = next(t.id for t in tiles.values() if t.index == 0)
    assert tiles[doomed].state == "failed"
    assert tiles[doomed].attempts == NODE_LOSSES_FORGIVEN + 2  # 3 forgiven, then 2 counted
    assert "counted now" in (tiles[doomed].reason or "")
    assert all(t.state == "done" for i, t in tiles.items() if i != doomed)
    assert job_row(db, job_id).state == "failed"

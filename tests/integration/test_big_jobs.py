"""Big jobs stay cheap (issue 20): a submit writes the job, its layers and its first frames; the
dispatcher writes the other frames as it reaches them; per-studio limits bound what is asked."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from farm.api.app import create_app
from farm.api.context import FarmContext
from farm.db import models as m
from farm.db.session import Database
from farm.pool_config import Limits, StudioLimits
from scheduler.dispatch.dispatcher import Dispatcher
from tests.conftest import Farm
from tests.factories import make_shot, make_studio, small_camera
from tests.integration.test_fair_share_farm import job_row, tick_until
from tests.invariants import assert_tiles_accounted

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]


def api_for(farm: Farm, limits: Limits | None = None) -> TestClient:
    db, store, out = farm
    context = FarmContext(db=db, store=store, output_root=out, limits=limits or Limits())
    return TestClient(create_app(context))


def chain_spec(shot_id: int, frames: int, *, cols: int = 1) -> dict[str, Any]:
    """Two noop layers, ``work`` then ``after`` frame by frame."""
    return {
        "name": "big",
        "shot_id": shot_id,
        "frames": {"first": 1, "last": frames},
        "resolution": {"width": 64, "height": 48},
        "camera": small_camera().model_dump(),
        "layers": [
            {
                "name": "work",
                "kind": "noop",
                "pool": "cpu",
                "tiles": {"cols": cols, "rows": 1, "overscan": 0},
            },
            {"name": "after", "kind": "noop", "pool": "cpu", "depends_on": ["work"]},
        ],
    }


def frame_rows(db: Database, job_id: int) -> int:
    with db.session() as session:
        return int(
            session.scalar(select(func.count(m.Frame.id)).where(m.Frame.job_id == job_id)) or 0
        )


def test_the_largest_job_is_stored_with_its_first_frames_only(farm: Farm) -> None:
    db, _, _ = farm
    who = make_studio(db, "nimble")
    shot_id = make_shot(db, who)
    with api_for(farm) as api:
        response = api.post("/jobs", json=chain_spec(shot_id, 100_000), headers=who.headers)
        assert response.status_code == 201, response.text
        job = response.json()
    assert frame_rows(db, job["id"]) == 2 * 1000  # FRAMES_AT_SUBMIT per layer
    assert [layer["frames_total"] for layer in job["layers"]] == [100_000, 100_000]
    assert [len(layer["frames"]) for layer in job["layers"]] == [1000, 1000]
    assert job["state"] == "waiting" and all(lay["state"] == "waiting" for lay in job["layers"])
    with db.session() as session:
        created = session.scalars(select(m.Layer.frames_created).where(m.Layer.job_id == job["id"]))
        assert list(created) == [1000, 1000]


def test_the_dispatcher_writes_frames_as_it_reaches_them(
    farm: Farm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("farm.db.queries.FRAMES_AT_SUBMIT", 5)
    monkeypatch.setattr("scheduler.dispatch.activate.FRAME_WINDOW", 8)
    db, store, out = farm
    who = make_studio(db, "nimble")
    shot_id = make_shot(db, who)
    with api_for(farm) as api:
        response = api.post("/jobs", json=chain_spec(shot_id, 40), headers=who.headers)
        assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    assert frame_rows(db, job_id) == 10
    dispatcher = Dispatcher(db, store, out)
    seen: list[int] = []
    tick_until(
        dispatcher,
        lambda: job_row(db, job_id).state == "done",
        timeout_s=120,
        each=lambda: seen.append(frame_rows(db, job_id)),
    )
    assert frame_rows(db, job_id) == 80
    assert max(seen) == 80 and min(seen) <= 2 * 8  # written a window at a time
    with db.session() as session:
        states = session.execute(
            select(m.Frame.state, func.count())
            .where(m.Frame.job_id == job_id)
            .group_by(m.Frame.state)
        ).all()
        assert dict(states) == {"done": 80}
        created = session.scalars(select(m.Layer.frames_created).where(m.Layer.job_id == job_id))
        assert list(created) == [None, None]
    assert_tiles_accounted(db, job_id)


def test_cancelling_a_big_job_cancels_the_frames_not_written_yet(
    farm: Farm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("farm.db.queries.FRAMES_AT_SUBMIT", 5)
    db, store, out = farm
    who = make_studio(db, "nimble")
    shot_id = make_shot(db, who)
    with api_for(farm) as api:
        job_id = api.post("/jobs", json=chain_spec(shot_id, 1000), headers=who.headers).json()["id"]
        dispatcher = Dispatcher(db, store, out)
        tick_until(dispatcher, lambda: job_row(db, job_id).state == "running")
        assert api.post(f"/jobs/{job_id}/cancel", headers=who.headers).status_code == 202
        tick_until(dispatcher, lambda: job_row(db, job_id).state == "cancelled")
        tick_until(dispatcher, lambda: not dispatcher._in_flight)  # stopped attempts recorded
        detail = api.get(f"/jobs/{job_id}", headers=who.headers).json()
    assert detail["state"] == "cancelled"
    assert all(layer["state"] == "cancelled" for layer in detail["layers"])
    assert frame_rows(db, job_id) < 2 * 1000  # the rest were never written
    assert_tiles_accounted(db, job_id)


def test_studio_limits_refuse_too_big_a_job_and_too_much_pending_work(farm: Farm) -> None:
    db, _, _ = farm
    who = make_studio(db, "nimble")
    other = make_studio(db, "rival")
    limits = Limits(
        max_pending_tiles=1_000,
        studios={"nimble": StudioLimits(max_job_frames=50, max_pending_tiles=300)},
    )
    with api_for(farm, limits) as api:
        shot = make_shot(db, who)
        big = api.post("/jobs", json=chain_spec(shot, 51), headers=who.headers)
        assert big.status_code == 422, big.text
        assert big.json()["field"] == "frames"
        assert "at most 50 (limits.max_job_frames)" in big.json()["message"]
        first = api.post("/jobs", json=chain_spec(shot, 50, cols=2), headers=who.headers)
        assert first.status_code == 201  # 50 x (2 + 1) = 150 tiles
        second = api.post("/jobs", json=chain_spec(shot, 50, cols=2), headers=who.headers)
        assert second.status_code == 201  # 300: at the limit
        third = api.post("/jobs", json=chain_spec(shot, 1), headers=who.headers)
        assert third.status_code == 409, third.text
        assert "300 tiles in unfinished jobs" in third.json()["message"]
        # Another studio has its own (farm-wide) limits.
        rival_shot = make_shot(db, other)
        assert (
            api.post("/jobs", json=chain_spec(rival_shot, 60), headers=other.headers).status_code
            == 201
        )

"""Job control through the API and the real dispatcher on local Ray (issue 20): pause, resume,
cancel and retry, each one rule with a reason and an event, scoped to the job's own studio."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from farm.api.app import create_app
from farm.api.context import FarmContext
from farm.db import models as m
from farm.db import queries
from farm.db.session import Database
from farm.vocab import Role
from scheduler.dispatch.dispatcher import Dispatcher
from tests.conftest import Farm
from tests.factories import make_studio
from tests.integration.test_dispatch import (
    GatedDispatcher,
    frame_state,
    seed_hash,
    submit,
    tiles_of,
)
from tests.integration.test_fair_share_farm import job_row, job_tiles, noop_job, tick_until
from tests.invariants import assert_tiles_accounted

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]


@pytest.fixture
def api(farm: Farm) -> Iterator[TestClient]:
    db, store, out = farm
    with TestClient(create_app(FarmContext(db=db, store=store, output_root=out))) as client:
        yield client


def events(db: Database, job_id: int, kind: str) -> list[dict[str, object]]:
    with db.session() as session:
        return [
            dict(e.payload)
            for e in session.scalars(
                select(m.Event).where(m.Event.job_id == job_id, m.Event.kind == kind)
            )
        ]


def states(db: Database, job_id: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for tile in job_tiles(db, job_id):
        out[tile.state] = out.get(tile.state, 0) + 1
    return out


def test_pause_dispatches_nothing_new_and_resume_finishes_the_job(
    farm: Farm, api: TestClient
) -> None:
    db, store, out = farm
    who = make_studio(db, "nimble")
    job_id = noop_job(db, who, cols=12, hold_s=0.3)
    dispatcher = Dispatcher(db, store, out)
    tick_until(dispatcher, lambda: states(db, job_id).get("running", 0) > 0)

    response = api.post(f"/jobs/{job_id}/pause", headers=who.headers)
    assert response.status_code == 202, response.text
    command = response.json()
    assert command["action"] == "pause" and command["applied_at"] is None
    assert command["reason"] == "paused by nimble-user"
    again = api.post(f"/jobs/{job_id}/pause", headers=who.headers)  # queued pause counts
    assert again.status_code == 409 and "already paused" in again.json()["message"]

    tick_until(dispatcher, lambda: job_row(db, job_id).paused)
    started = {t.id for t in job_tiles(db, job_id) if t.attempts}
    # The running ones finish; nothing new starts, then or in the second after.
    tick_until(dispatcher, lambda: states(db, job_id).get("running", 0) == 0, timeout_s=20)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        dispatcher.tick()
    assert {t.id for t in job_tiles(db, job_id) if t.attempts} == started
    assert states(db, job_id)["pending"] == 12 - len(started)
    detail = api.get(f"/jobs/{job_id}", headers=who.headers).json()
    assert detail["paused"] is True and detail["layers"][0]["waiting"] == "job paused"
    applied = api.get(f"/jobs/{job_id}/commands/{command['id']}", headers=who.headers).json()
    assert applied["applied_at"] is not None and applied["result"].startswith("paused")

    assert api.post(f"/jobs/{job_id}/resume", headers=who.headers).status_code == 202
    dispatcher.run_until_done([job_id], timeout_s=60)
    assert job_row(db, job_id).state == "done" and not job_row(db, job_id).paused
    assert [e["action"] for e in events(db, job_id, "job_control")] == ["pause", "resume"]
    assert api.post(f"/jobs/{job_id}/resume", headers=who.headers).status_code == 409
    assert_tiles_accounted(db, job_id)


def test_a_job_that_ended_no_longer_says_why_it_waits(farm: Farm, api: TestClient) -> None:
    db, store, out = farm
    who = make_studio(db, "nimble")
    job_id = noop_job(db, who, cols=6, hold_s=0.3)
    dispatcher = Dispatcher(db, store, out)
    assert api.post(f"/jobs/{job_id}/pause", headers=who.headers).status_code == 202
    tick_until(dispatcher, lambda: "job paused" in job_row(db, job_id).message, timeout_s=20)
    assert api.post(f"/jobs/{job_id}/cancel", headers=who.headers).status_code == 202
    dispatcher.run_until_done([job_id], timeout_s=60)
    detail = api.get(f"/jobs/{job_id}", headers=who.headers).json()
    assert detail["state"] == "cancelled"
    assert detail["message"] == ""  # it said "work: job paused" for ever
    assert all(layer["waiting"] == "" for layer in detail["layers"])
    with db.session() as session:
        reasons = session.scalars(select(m.Layer.reason).where(m.Layer.job_id == job_id))
        assert set(reasons) == {""}


def test_cancel_stops_running_tiles_and_records_them_once(farm: Farm, api: TestClient) -> None:
    db, store, out = farm
    who = make_studio(db, "nimble")
    other = make_studio(db, "rival")
    job_id = noop_job(db, who, cols=10, hold_s=5.0)
    dispatcher = Dispatcher(db, store, out)
    tick_until(dispatcher, lambda: states(db, job_id).get("running", 0) >= 2)

    assert api.post(f"/jobs/{job_id}/cancel", headers=other.headers).status_code == 404
    response = api.post(f"/jobs/{job_id}/cancel", headers=who.headers)
    assert response.status_code == 202, response.text
    began = time.monotonic()
    tick_until(dispatcher, lambda: job_row(db, job_id).state == "cancelled", timeout_s=10)
    assert states(db, job_id) == {"cancelled": 10}
    assert all(t.reason == "cancelled by nimble-user" for t in job_tiles(db, job_id))
    # The stopped attempts come back from Ray (ray.cancel) long before their 5 s hold ends;
    # each is then recorded once, billed, and changes nothing.
    tick_until(dispatcher, lambda: not dispatcher._in_flight, timeout_s=10)
    assert time.monotonic() - began < 4.5
    assert states(db, job_id) == {"cancelled": 10}
    assert_tiles_accounted(db, job_id)
    assert [e["action"] for e in events(db, job_id, "job_control")] == ["cancel"]
    assert "running, stopped" in str(events(db, job_id, "job_control")[0]["result"])
    late = api.post(f"/jobs/{job_id}/cancel", headers=who.headers)
    assert late.status_code == 409 and "already ended" in late.json()["message"]


def test_cancel_waiting_for_the_dispatcher_and_no_frame_is_assembled(
    farm: Farm, api: TestClient, tmp_path: Path
) -> None:
    db, store, out = farm
    job_id, _ = submit(db, store, tmp_path, frames=(1, 2), grid=(2, 1))
    dispatcher = GatedDispatcher(db, store, out)
    dispatcher.gated = {"h100"}  # sims run, renders wait: then cancel
    tick_until(dispatcher, lambda: frame_state(db, job_id, "sim", 2) == "done")
    headers = {"Authorization": f"Bearer {_token(db)}"}
    # Renders run now; assemblies wait until the cancel is in. Opening both at once raced:
    # with the kernels compiled at install, the whole job could finish before the cancel.
    dispatcher.gated = {"cpu"}
    dispatcher.start()
    try:
        response = api.post(f"/jobs/{job_id}/cancel?wait=10", headers=headers)
        assert response.status_code == 202, response.text
        assert response.json()["applied_at"] is not None  # waited for the dispatcher
        assert response.json()["reason"] == "cancelled by td2"
        dispatcher.gated = set()  # nothing of the cancelled job may run now
        deadline = time.monotonic() + 10
        while job_row(db, job_id).state != "cancelled":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.0)  # stopped tiles come back and nothing moves
    finally:
        dispatcher.stop()
    assert frame_state(db, job_id, "comp", 1) == "cancelled"
    assert frame_state(db, job_id, "comp", 2) == "cancelled"
    assert not list(out.rglob("*.exr"))
    assert_tiles_accounted(db, job_id)


def test_retry_runs_failed_frames_again_with_a_fresh_budget(
    farm: Farm, api: TestClient, tmp_path: Path
) -> None:
    db, store, out = farm
    job_id, spec = submit(db, store, tmp_path, frames=(1, 2), grid=(2, 1))
    dispatcher = Dispatcher(db, store, out, max_attempts=2)
    seed = seed_hash(db, spec)
    with store.local_path(seed) as path:
        kept = Path(path).read_bytes()
    store.delete(seed)  # every sim frame fails twice, all else is cancelled: the job fails
    dispatcher.run_until_done([job_id], timeout_s=120)
    assert job_row(db, job_id).state == "failed"
    assert frame_state(db, job_id, "sim", 2) == "failed"
    assert frame_state(db, job_id, "comp", 2) == "cancelled"
    headers = {"Authorization": f"Bearer {_token(db)}"}
    unknown = api.post(f"/jobs/{job_id}/retry", json={"layers": ["nope"]}, headers=headers)
    assert unknown.status_code == 422 and "no layer named 'nope'" in unknown.json()["message"]
    outside = api.post(f"/jobs/{job_id}/retry", json={"frames": [7, 2]}, headers=headers)
    assert outside.status_code == 422
    assert outside.json()["message"] == f"frames: job {job_id} has no frame 7; its frames are 1-2"

    assert store.put_bytes(kept).content_hash == seed  # the seed is back
    response = api.post(f"/jobs/{job_id}/retry", json={"frames": [2]}, headers=headers)
    assert response.status_code == 202, response.text
    assert "retried" in response.json()["reason"]
    dispatcher.run_until_done([job_id], timeout_s=120)
    assert job_row(db, job_id).state == "failed"  # frame 1 was not retried
    assert frame_state(db, job_id, "comp", 2) == "done", [
        (t.layer_id, t.frame_id, t.state, t.attempts, t.reason) for t in job_tiles(db, job_id)
    ] + [(s, frame_state(db, job_id, s, n)) for s in ("sim", "render", "comp") for n in (1, 2)]
    sims = tiles_of(db, job_id, "sim", 2)
    assert all(t.state == "done" and t.attempts == 3 and t.forgiven == 2 for t in sims)
    assert frame_state(db, job_id, "sim", 1) == "failed"

    response = api.post(f"/jobs/{job_id}/retry", headers=headers)  # everything left
    assert response.status_code == 202, response.text
    dispatcher.run_until_done([job_id], timeout_s=120)
    assert job_row(db, job_id).state == "done"
    assert job_row(db, job_id).finished_at is not None
    assert_tiles_accounted(db, job_id)
    assert [e["action"] for e in events(db, job_id, "job_control")] == ["retry", "retry"]
    none = api.post(f"/jobs/{job_id}/retry", json={"frames": [2]}, headers=headers)
    assert none.status_code == 409 and "nothing to retry" in none.json()["message"]


def _token(db: Database) -> str:
    """A token of a TD ``td2`` of the studio that owns the jobs ``submit`` makes (studio 1)."""
    with db.session() as session:
        studio = session.get_one(m.Studio, 1)
        _, token = queries.create_user(session, studio, "td2", Role.TD)
        return token


def test_cli_pause_resume_cancel_and_priority(
    farm: Farm, api: TestClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ``farm pause|resume|cancel|retry|priority`` commands drive the same routes, and a job of
    another studio is 'not found' (exit 3) in one line."""
    from studio_client.cli import main
    from studio_client.client import Client

    db, store, out = farm
    who = make_studio(db, "nimble")
    other = make_studio(db, "rival")
    job_id = noop_job(db, who, cols=4, hold_s=0.05)
    caller = {"token": who.token}

    def make_client(url: str | None, token: str | None) -> Client:
        return Client("http://testserver", caller["token"], transport=api._transport)

    monkeypatch.setattr("studio_client.cli.jobs.make_client", make_client)

    # No dispatcher is running yet: the pause is queued and says so.
    assert main(["pause", str(job_id), "--wait", "0"]) == 0
    assert f"job {job_id}: pause queued (paused by nimble-user)" in capsys.readouterr().out
    assert main(["pause", str(job_id), "--wait", "0"]) == 4
    assert "already paused" in capsys.readouterr().err
    assert main(["priority", str(job_id), "80"]) == 0
    assert f"job {job_id}: priority 80" in capsys.readouterr().out
    assert job_row(db, job_id).priority == 80
    assert events(db, job_id, "job_priority") == [{"priority": 80}]
    assert main(["priority", str(job_id), "101"]) == 2
    capsys.readouterr()
    assert main(["priority", str(job_id), "-1"]) == 2  # a value out of range, not an option
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: Invalid value for 'value': Input should be greater than or equal to 0"]

    caller["token"] = other.token
    assert main(["cancel", str(job_id), "--wait", "0"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "not found" in err[0]
    caller["token"] = who.token

    dispatcher = Dispatcher(db, store, out)
    tick_until(dispatcher, lambda: job_row(db, job_id).paused)
    assert main(["resume", str(job_id), "--wait", "0"]) == 0
    capsys.readouterr()
    dispatcher.run_until_done([job_id], timeout_s=60)
    assert job_row(db, job_id).state == "done"
    assert main(["cancel", str(job_id), "--wait", "0"]) == 4
    assert "done" in capsys.readouterr().err
    assert main(["retry", str(job_id), "--layer", "nope", "--wait", "0"]) == 2
    assert "nope" in capsys.readouterr().err

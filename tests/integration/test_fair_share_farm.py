"""Fair share through the real dispatcher on local Ray (issue 19): many studios, quotas, licences,
rush preemption and why-pending reasons, seen in the database, the API and ``farm status``.

Jobs here are ``noop`` layers whose tiles hold their slot ``hold_s`` seconds, so timing is set by
the test, not by rendering. Local Ray has 2 CPUs and every pool is declared with 2 slots; the
dispatcher keeps a few more tiles in flight than that (:meth:`Dispatcher._target`), and a tile
counts as started when the dispatcher commits it RUNNING and sends it to Ray.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from farm import schemas
from farm.api.app import create_app
from farm.api.context import FarmContext
from farm.db import models as m
from farm.db import queries, shares
from farm.db.session import Database
from scheduler.dispatch.dispatcher import Dispatcher
from scheduler.dispatch.results import InFlight
from studio_client import Client
from studio_client.cli import main
from tests.conftest import Farm
from tests.factories import StudioUser, make_shot, make_studio, small_camera

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]


class RecordingDispatcher(Dispatcher):
    """A dispatcher that notes the studio of each tile in the order it sends them to Ray."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.sent: list[int] = []
        super().__init__(*args, **kwargs)

    def _submit(self, flight: InFlight, ref: Any) -> None:
        self.sent.append(flight.studio_id)
        super()._submit(flight, ref)


def noop_job(
    db: Database,
    who: StudioUser,
    *,
    cols: int,
    rows: int = 1,
    hold_s: float,
    requirements: dict[str, Any] | None = None,
    pool: str = "cpu",
    rush: bool = False,
    **layer_options: Any,
) -> int:
    """Submit a one-frame job of one noop layer ``work`` on ``pool``; returns its id."""
    shot_id = make_shot(db, who, shot=f"sh{time.monotonic_ns() % 10**9}")
    layer: dict[str, Any] = {
        "name": "work",
        "kind": "noop",
        "pool": pool,
        "hold_s": hold_s,
        "tiles": {"cols": cols, "rows": rows, "overscan": 0},
    }
    if requirements is not None:
        layer["requirements"] = requirements
    layer.update(layer_options)
    spec = schemas.JobSpec.model_validate(
        {
            "name": "noopjob",
            "shot_id": shot_id,
            "frames": {"first": 1, "last": 1},
            "resolution": {"width": 64, "height": 48},
            "camera": small_camera().model_dump(),
            "layers": [layer],
        }
    )
    with db.session() as session:
        job = queries.submit_job(session, session.get_one(m.User, who.user_id), spec)
        if rush:
            shares.set_rush(session, job.id, True)
        return job.id


def tick_until(
    dispatcher: Dispatcher,
    condition: Callable[[], bool],
    timeout_s: float = 60,
    *,
    each: Callable[[], None] | None = None,
) -> None:
    """Tick until ``condition``; ``each`` runs between two ticks (to sample the database)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        dispatcher.tick()
        if each is not None:
            each()
        assert time.monotonic() < deadline, "condition not reached in time"


def job_tiles(db: Database, job_id: int) -> list[m.Tile]:
    with db.session() as session:
        return list(session.scalars(select(m.Tile).where(m.Tile.job_id == job_id)))


def running_count(db: Database, job_id: int) -> int:
    with db.session() as session:
        return int(
            session.scalar(
                select(func.count(m.Tile.id)).where(
                    m.Tile.job_id == job_id, m.Tile.state == "running"
                )
            )
            or 0
        )


def job_row(db: Database, job_id: int) -> m.Job:
    with db.session() as session:
        job = session.get_one(m.Job, job_id)
        session.expunge(job)
        return job


def test_five_studios_submitting_at_once_all_start_early_and_none_starves(farm: Farm) -> None:
    """Issue 19's regression: studios 4 and 5 got none of the first 427 tile starts."""
    db, store, out = farm
    studios = [make_studio(db, name) for name in ("ant", "bee", "cat", "dog", "eel")]
    jobs = [noop_job(db, who, cols=6, rows=4, hold_s=0.05) for who in studios]
    dispatcher = RecordingDispatcher(db, store, out)
    dispatcher.run_until_done(jobs, timeout_s=60)
    assert all(job_row(db, j).state == "done" for j in jobs)
    sent = dispatcher.sent
    ids = [who.studio_id for who in studios]
    assert Counter(sent) == {studio: 24 for studio in ids}
    assert set(sent[:10]) == set(ids), sent[:10]
    first = {studio: sent.index(studio) for studio in ids}
    last = {studio: len(sent) - 1 - sent[::-1].index(studio) for studio in ids}
    # Every studio is still being served when the last one starts: nobody finished alone.
    assert min(last.values()) > max(first.values()), (first, last)


def test_weight_three_to_one_gets_about_three_times_the_starts_under_contention(
    farm: Farm,
) -> None:
    """Weights 3:1 with whole-slot shares: 4 slots in flight on cpu split 3 and 1."""
    db, store, out = farm
    heavy, light = make_studio(db, "heavy"), make_studio(db, "light")
    with db.session() as session:
        session.add(m.Quota(studio_id=heavy.studio_id, pool="cpu", weight=3))
        session.add(m.Quota(studio_id=light.studio_id, pool="cpu", weight=1))
    jobs = [noop_job(db, who, cols=36, hold_s=0.1) for who in (heavy, light)]

    class FourInFlight(RecordingDispatcher):
        def _target(self, pool: str, *, batched: bool = True) -> int:
            return 4 if pool == "cpu" else super()._target(pool, batched=batched)

    dispatcher = FourInFlight(db, store, out, queue_s=0)
    dispatcher.run_until_done(jobs, timeout_s=60)
    sent = dispatcher.sent
    both_busy = sent[: len(sent) - 1 - sent[::-1].index(heavy.studio_id)]  # until heavy ran out
    counts = Counter(both_busy)
    ratio = counts[heavy.studio_id] / max(counts[light.studio_id], 1)
    assert 2.0 <= ratio <= 4.5, (counts, ratio)


def test_fractional_weighted_shares_still_converge_to_three_to_one(farm: Farm) -> None:
    """With ``queue_s=0`` the cpu pool keeps 3 in flight: shares 2.25 and 0.75 slots.

    Regression: the pool locked on 2 + 1 (about 2:1) for as long as the hour-long half-life
    took to tip it; see ``test_a_fractional_share_changes_hands_as_slots_free_one_at_a_time``."""
    db, store, out = farm
    heavy, light = make_studio(db, "heavy"), make_studio(db, "light")
    with db.session() as session:
        session.add(m.Quota(studio_id=heavy.studio_id, pool="cpu", weight=3))
        session.add(m.Quota(studio_id=light.studio_id, pool="cpu", weight=1))
    jobs = [noop_job(db, who, cols=36, hold_s=0.1) for who in (heavy, light)]
    dispatcher = RecordingDispatcher(db, store, out, queue_s=0)
    assert dispatcher._target("cpu") == 3
    dispatcher.run_until_done(jobs, timeout_s=60)
    sent = dispatcher.sent
    both_busy = sent[: len(sent) - 1 - sent[::-1].index(heavy.studio_id)]
    counts = Counter(both_busy)
    ratio = counts[heavy.studio_id] / max(counts[light.studio_id], 1)
    assert 2.4 <= ratio <= 4.5, (counts, ratio)


def capped_job(db: Database, *, cols: int, hold_s: float) -> int:
    """A noop job of studio ``capped``, whose ceiling on pool cpu is 1."""
    who = make_studio(db, "capped")
    with db.session() as session:
        session.add(m.Quota(studio_id=who.studio_id, pool="cpu", ceiling=1))
    return noop_job(db, who, cols=cols, hold_s=hold_s)


def test_a_studio_at_its_ceiling_never_runs_more_and_still_finishes(farm: Farm) -> None:
    db, store, out = farm
    job_id = capped_job(db, cols=6, hold_s=0.1)
    dispatcher = Dispatcher(db, store, out)
    assert dispatcher._target("cpu") > 1  # without the ceiling, more would be in flight
    seen: list[int] = []
    messages: set[str] = set()

    def sample() -> None:
        seen.append(running_count(db, job_id))
        messages.add(job_row(db, job_id).message)

    tick_until(dispatcher, lambda: job_row(db, job_id).state == "done", each=sample)
    assert max(seen) == 1, Counter(seen)
    assert "work: studio capped is at its ceiling on pool cpu (1 running, ceiling 1)" in messages
    assert all(t.state == "done" and t.attempts == 1 for t in job_tiles(db, job_id))


def count_plans(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Count the dispatcher's plans from now on; returns the counter."""
    import scheduler.dispatch.dispatcher as dispatcher_module

    plans = 0
    real_plan = dispatcher_module.plan

    def counting_plan(*args: Any, **kwargs: Any) -> Any:
        nonlocal plans
        plans += 1
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(dispatcher_module, "plan", counting_plan)
    return lambda: plans


def test_a_plan_that_picks_nothing_is_not_made_again_every_poll(
    farm: Farm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A studio at its ceiling with a core free: the planner picks nothing, and nothing can
    change that until an attempt ends (or a command, new work or terms come, or the reasons'
    second). Each empty round was a transaction and a whole plan, every ``poll_s``."""
    db, store, out = farm
    job_id = capped_job(db, cols=3, hold_s=2.0)
    dispatcher = Dispatcher(db, store, out)
    tick_until(dispatcher, lambda: running_count(db, job_id) == 1)
    tick_until(dispatcher, lambda: dispatcher._held_back, timeout_s=10)
    plans = count_plans(monkeypatch)
    rounds = 0
    until = time.monotonic() + 1.0
    while time.monotonic() < until:
        if not dispatcher.tick():
            time.sleep(dispatcher.poll_s)
        rounds += 1
    assert rounds >= 5, rounds
    assert plans() <= 2, f"planned {plans()} times in {rounds} rounds with nothing to send"
    dispatcher.run_until_done([job_id], timeout_s=60)
    assert all(t.state == "done" and t.attempts == 1 for t in job_tiles(db, job_id))


def test_a_licence_is_never_exceeded_and_waiting_tiles_name_it(farm: Farm) -> None:
    db, store, out = farm
    who = make_studio(db, "fx")
    with db.session() as session:
        session.add(m.Licence(name="houdini", count=1))
    job_id = noop_job(db, who, cols=4, hold_s=0.3, requirements={"licences": ["houdini"]})
    dispatcher = Dispatcher(db, store, out)
    seen: list[int] = []
    reasons: set[str] = set()

    def sample() -> None:
        seen.append(running_count(db, job_id))
        with db.session() as session:  # what GET /jobs/{id} shows on each pending tile
            detail = queries.job_detail(session, who.studio_id, job_id)
        reasons.update(
            t.reason for f in detail.layers[0].frames for t in f.tiles if t.state == "pending"
        )

    # Reasons are written at most once a second: tick until the job's message shows one.
    tick_until(
        dispatcher, lambda: "houdini" in job_row(db, job_id).message, timeout_s=10, each=sample
    )
    assert job_row(db, job_id).message == "work: licence houdini: 1 of 1 in use"
    sample()
    assert "licence houdini: 1 of 1 in use" in reasons
    tick_until(dispatcher, lambda: job_row(db, job_id).state == "done", each=sample)
    assert max(seen) == 1, Counter(seen)
    assert all(t.state == "done" for t in job_tiles(db, job_id))


def test_rush_preempts_over_share_tiles_which_finish_later_without_an_attempt(
    farm: Farm,
) -> None:
    db, store, out = farm
    owner, rusher = make_studio(db, "owner"), make_studio(db, "rusher")
    long_job = noop_job(db, owner, cols=4, hold_s=2.0)
    dispatcher = Dispatcher(db, store, out, queue_s=0)
    target = dispatcher._target("cpu")
    assert target == 3  # 2 slots + 1 queued: the owner fills all three
    tick_until(dispatcher, lambda: running_count(db, long_job) == target, timeout_s=10)
    rush_job = noop_job(db, rusher, cols=2, hold_s=0.1)
    deadline = time.monotonic() + 0.3  # the new job is loaded, planned, and waits
    while time.monotonic() < deadline:
        dispatcher.tick()
    assert running_count(db, rush_job) == 0
    with db.session() as session:  # an operator marks the job rush once it is on the farm
        shares.set_rush(session, rush_job, True)
    dispatcher.run_until_done([long_job, rush_job], timeout_s=60)

    owners = job_tiles(db, long_job)
    rushed = job_tiles(db, rush_job)
    preempted = [t for t in owners if t.preemptions]
    assert preempted, "no tile of the over-share studio was preempted"
    assert all(t.state == "done" and t.attempts == 1 for t in owners + rushed)
    assert all(t.preemptions >= 1 for t in preempted)
    # The rush job ran ahead of the owner's remaining work.
    rush_done, long_done = job_row(db, rush_job).finished_at, job_row(db, long_job).finished_at
    assert rush_done is not None and long_done is not None and rush_done < long_done
    with db.session() as session:
        usage = Counter(session.scalars(select(m.UsageRecord.tile_id)))
        done_events = Counter(
            tile_id
            for payload in session.scalars(select(m.Event.payload).where(m.Event.kind == "tiles"))
            for tile_id, state, _ in payload["tiles"]
            if state == "done"
        )
    # A preempted attempt uses up nothing: one usage row per attempt, one success per tile.
    assert {t.id: usage[t.id] for t in owners + rushed} == {t.id: 1 for t in owners + rushed}
    assert done_events == {t.id: 1 for t in owners + rushed}, done_events


@pytest.fixture
def api(farm: Farm) -> Iterator[TestClient]:
    db, store, out = farm
    with TestClient(create_app(FarmContext(db=db, store=store, output_root=out))) as client:
        yield client


def test_why_a_job_waits_shows_in_the_api_and_in_farm_status(
    farm: Farm,
    api: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db, store, out = farm
    who = make_studio(db, "nimble")
    with db.session() as session:  # declared, so the job is accepted, but no Ray node has it
        session.add(
            m.Pool(name="quantum", accelerator="none", price_per_node_hour=1.0, cpus_per_node=1)
        )
    job_id = noop_job(db, who, cols=2, hold_s=0.1, pool="quantum")
    dispatcher = Dispatcher(db, store, out)
    tick_until(dispatcher, lambda: bool(job_row(db, job_id).message), timeout_s=10)
    reason = (
        "pool quantum has no nodes: no Ray node offers resource 'pool:quantum' "
        "(start one with farm worker --pool quantum)"
    )

    response = api.get(f"/jobs/{job_id}", headers=who.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == f"work: {reason}"
    tiles = body["layers"][0]["frames"][0]["tiles"]
    assert [(t["state"], t["reason"]) for t in tiles] == [("pending", reason)] * 2

    client = Client("http://testserver", who.token, transport=api._transport)
    monkeypatch.setattr("studio_client.cli.jobs.make_client", lambda url, token: client)
    assert main(["status", str(job_id)]) == 0
    printed = " ".join(capsys.readouterr().out.split())  # rich wraps to the terminal width
    assert f"work waiting because {reason}" in printed
    assert not dispatcher._in_flight


def test_a_layer_needing_more_accelerator_memory_than_any_pool_is_a_422_storing_nothing(
    farm: Farm, api: TestClient
) -> None:
    db, _, _ = farm
    who = make_studio(db, "nimble")
    shot_id = make_shot(db, who)
    spec = {
        "name": "big",
        "shot_id": shot_id,
        "frames": {"first": 1, "last": 1},
        "resolution": {"width": 64, "height": 48},
        "camera": small_camera().model_dump(),
        "layers": [
            {
                "name": "work",
                "kind": "noop",
                "requirements": {"accelerator": "nvidia-h100", "accelerator_memory_gb": 96},
            }
        ],
    }
    response = api.post("/jobs", json=spec, headers=who.headers)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_spec"
    assert body["field"] == "layers[0].requirements"
    assert "no node of any pool has 96 GB of accelerator memory on nvidia-h100" in body["message"]
    assert "largest: 80 GB in pool h100" in body["message"]
    with db.session() as session:
        assert session.scalar(select(func.count(m.Job.id))) == 0
        assert session.scalar(select(func.count(m.Layer.id))) == 0


def test_a_two_core_tile_runs_where_pools_share_cores(farm: Farm) -> None:
    """The embedded farm's pools share one machine's cores and keep one Ray queue between
    them; a tile asking for 2 cores must still get both (it once waited forever for the
    group's queue to grant it a second slot)."""
    db, store, out = farm
    who = make_studio(db, "nimble")
    job_id = noop_job(db, who, cols=2, hold_s=0.05, requirements={"cores": 2})
    other = noop_job(db, who, cols=6, hold_s=0.05, pool="h100")
    Dispatcher(db, store, out).run_until_done([job_id, other], timeout_s=60)
    assert job_row(db, job_id).state == "done" and job_row(db, other).state == "done"


def test_picks_held_back_on_shared_cores_do_not_replan_every_poll(
    farm: Farm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While long tiles hold the shared cores, another pool's ready tiles are picked and held
    back; the dispatcher then plans again when an attempt ends (or once a second), not every
    ``poll_s``: each empty round was a database transaction and a plan on the 2 cores the tiles
    run on. The held-back tiles still run once the cores free up."""
    db, store, out = farm
    who = make_studio(db, "nimble")
    dispatcher = Dispatcher(db, store, out)
    holding = noop_job(db, who, cols=2, hold_s=3.0)
    tick_until(dispatcher, lambda: running_count(db, holding) == 2)
    waiting = noop_job(db, who, cols=4, hold_s=0.01, pool="h100")
    tick_until(dispatcher, lambda: dispatcher._held_back, timeout_s=10)
    assert running_count(db, waiting) == 0

    plans = count_plans(monkeypatch)
    rounds = 0
    until = time.monotonic() + 1.0
    while time.monotonic() < until and running_count(db, holding) == 2:
        if not dispatcher.tick():
            time.sleep(dispatcher.poll_s)
        rounds += 1
    assert rounds >= 5, rounds  # the loop went round while the cores were held
    assert plans() <= 2, f"planned {plans()} times in {rounds} rounds with nothing to send"
    dispatcher.run_until_done([holding, waiting], timeout_s=60)
    assert job_row(db, holding).state == "done" and job_row(db, waiting).state == "done"

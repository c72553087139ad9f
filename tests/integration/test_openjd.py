"""Open Job Description templates through the farm (issue 22): expanded by openjd-model, run
task by task by openjd-sessions on the real dispatcher and local Ray, refused with a reason
when the farm cannot honour them."""

from __future__ import annotations

import itertools
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from farm import schemas
from farm.api.app import create_app
from farm.api.context import FarmContext
from farm.db import control, queries
from farm.db import models as m
from farm.db.session import Database
from farm.errors import InvalidSpec, NotFound
from farm.openjd import decode_template, to_job_spec
from farm.states import JobAction
from scheduler.dispatch.dispatcher import Dispatcher
from tests.conftest import Farm
from tests.factories import StudioUser, make_shot, make_studio
from tests.integration.test_dispatch import tick_until, tiles_of
from tests.invariants import assert_tiles_accounted

TEMPLATES = Path(__file__).parent.parent / "openjd"
ARG = 'it\'s a "quoted" & $HOME arg'


def template(name: str) -> dict[str, Any]:
    return decode_template((TEMPLATES / name).read_text())


def submit(db: Database, source: schemas.OpenJDSource) -> int:
    return submit_as(db, source)[0]


def submit_as(db: Database, source: schemas.OpenJDSource) -> tuple[int, StudioUser]:
    who = make_studio(db, "alpha")
    shot_id = make_shot(db, who)
    spec = to_job_spec(source, shot_id=shot_id)
    with db.session() as session:
        user = session.get_one(m.User, who.user_id)
        return queries.submit_job(session, user, spec).id, who


def tiles(db: Database, job_id: int, layer: str) -> list[m.Tile]:
    return tiles_of(db, job_id, layer)


# ----------------------------------------------------------------------------- expansion
def test_steps_become_layers_and_tasks_their_frames() -> None:
    source = schemas.OpenJDSource(
        template=template("pipeline.yaml"), parameters={"Out": "/tmp/x", "Frames": "1-4"}
    )
    spec = to_job_spec(source, shot_id=1)
    comp, render = spec.layers
    # The step listed first depends on the one after it; names become safe layer names.
    assert (comp.name, comp.openjd_step, comp.depends_on) == (
        "Comp_Frames",
        "Comp Frames",
        ("Render",),
    )
    assert comp.wait_for == "layer" and comp.kind == "command"
    assert comp.task_count == 4 and render.task_count == 8  # Frame * Eye
    assert spec.name == "Comp_sh0100" and spec.resolution is None


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ({"amounts": [{"name": "amount.worker.vcpu", "min": 3}]}, {"cores": 3}),
        ({"amounts": [{"name": "amount.worker.memory", "min": 2048}]}, {"memory_gb": 2.0}),
        (
            {"amounts": [{"name": "amount.worker.gpu", "min": 2}]},
            {"accelerator": "nvidia-h100", "accelerator_count": 2},
        ),
        (
            {
                "amounts": [{"name": "amount.worker.gpu", "min": 1}],
                "attributes": [{"name": "delta:attr.accelerator", "anyOf": ["ascend-910b"]}],
            },
            {"accelerator": "ascend-910b", "accelerator_count": 1},
        ),
        ({"amounts": [{"name": "amount.houdini", "min": 1}]}, {"licences": ("houdini",)}),
        ({"attributes": [{"name": "attr.worker.os.family", "anyOf": ["linux", "macos"]}]}, {}),
    ],
)
def test_host_requirements_become_the_layers_requirements(
    host: dict[str, Any], expected: dict[str, Any]
) -> None:
    raw = one_step("echo hi", hostRequirements=host)
    layer = to_job_spec(schemas.OpenJDSource(template=raw), shot_id=1).layers[0]
    for key, value in expected.items():
        assert getattr(layer.requirements, key) == value


def one_step(command: str, **step: Any) -> dict[str, Any]:
    return {
        "specificationVersion": "jobtemplate-2023-09",
        "name": "one",
        "steps": [
            {
                "name": "run",
                "script": {"actions": {"onRun": {"command": "bash", "args": ["-c", command]}}},
                **step,
            }
        ],
    }


@pytest.mark.parametrize(
    ("raw", "parameters", "message"),
    [
        ({"specificationVersion": "jobtemplate-2023-09", "name": "x"}, {}, "steps"),
        (one_step("true"), {"Nope": "1"}, "Nope"),
        (
            one_step(
                "true",
                hostRequirements={
                    "attributes": [{"name": "attr.worker.os.family", "anyOf": ["windows"]}]
                },
            ),
            {},
            "cannot honour attr.worker.os.family ['windows']",
        ),
        (
            one_step(
                "true",
                hostRequirements={"amounts": [{"name": "amount.worker.disk.scratch", "min": 5}]},
            ),
            {},
            "cannot honour the amount amount.worker.disk.scratch",
        ),
        (
            {
                "specificationVersion": "jobtemplate-2023-09",
                "name": "loop",
                "steps": [
                    {
                        "name": a,
                        "dependencies": [{"dependsOn": b}],
                        "script": {"actions": {"onRun": {"command": "true"}}},
                    }
                    for a, b in (("A", "B"), ("B", "A"))
                ],
            },
            {},
            "cycle",
        ),
    ],
)
def test_a_template_the_farm_cannot_honour_is_refused_with_the_reason(
    raw: dict[str, Any], parameters: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidSpec, match=re.escape(message)):
        to_job_spec(schemas.OpenJDSource(template=raw, parameters=parameters), shot_id=1)


def test_bad_yaml_is_refused_naming_the_template() -> None:
    with pytest.raises(InvalidSpec, match="template"):
        decode_template("steps: [unclosed")


# ----------------------------------------------------------------------------- running
@pytest.mark.usefixtures("ray_local")
@pytest.mark.slow
def test_a_template_runs_through_the_farm_to_the_expected_files(farm: Farm, tmp_path: Path) -> None:
    db, store, out = farm
    work = tmp_path / "work"
    work.mkdir()
    source = schemas.OpenJDSource(template=template("pipeline.yaml"), parameters={"Out": str(work)})
    job_id = submit(db, source)
    Dispatcher(db, store, out).run_until_done([job_id], timeout_s=300)
    with db.session() as session:
        detail = queries.job_detail(session, 1, job_id)
    assert detail.state == "done", detail.model_dump_json(indent=1)[:3000]
    for frame in (1, 2, 3):
        assert sorted((work / f"render.{frame}.txt").read_text().split()) == ["left", "right"]
        rendered = (work / f"render.{frame}.txt").read_text()
        assert (work / f"comp.{frame}.txt").read_text() == f"comp {frame} of {rendered}"
        for eye in ("left", "right"):  # one argv entry, nothing expanded
            assert (work / f"argv.{frame}.{eye}.txt").read_text() == ARG
    # Step dependency: no comp task started before every render task had ended.
    renders, comps = tiles(db, job_id, "Render"), tiles(db, job_id, "Comp_Frames")
    assert len(renders) == 6 and len(comps) == 3
    last_render = max(t.finished_at for t in renders if t.finished_at)
    assert all(t.started_at and t.started_at >= last_render for t in comps)
    # Each task's log: environments entered in order, the task, exited in reverse order.
    for tile in renders:
        assert tile.log_hash is not None
        log = store.path(tile.log_hash).read_text()
        markers = [w for w in log.split() if w.startswith("marker-")]
        assert markers == [
            "marker-enter-job",
            "marker-enter-step",
            "marker-task",
            "marker-exit-step",
            "marker-exit-job",
        ], log
    comp_log = store.path(comps[0].log_hash or "").read_text()
    assert [w for w in comp_log.split() if w.startswith("marker-")] == [
        "marker-enter-job",
        "marker-exit-job",
    ]
    assert_tiles_accounted(db, job_id)


@pytest.mark.usefixtures("ray_local")
@pytest.mark.slow
def test_a_failing_task_keeps_its_log_and_says_why_in_one_line(farm: Farm, tmp_path: Path) -> None:
    db, store, out = farm
    raw = one_step("echo about to fail; echo 'openjd_fail: the plate is missing'; exit 3")
    job_id = submit(db, schemas.OpenJDSource(template=raw))
    Dispatcher(db, store, out, max_attempts=1).run_until_done([job_id], timeout_s=120)
    (tile,) = tiles(db, job_id, "run")
    assert tile.state == "failed"
    assert "the plate is missing" in tile.reason and "\n" not in tile.reason
    assert tile.log_hash is not None
    assert "about to fail" in store.path(tile.log_hash).read_text()


# ----------------------------------------------------------------------------- control and waits
def _api(farm: Farm) -> TestClient:
    db, store, out = farm
    return TestClient(create_app(FarmContext(db=db, store=store, output_root=out)))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.usefixtures("ray_local")
@pytest.mark.slow
def test_cancel_leaves_no_command_running(farm: Farm, tmp_path: Path) -> None:
    db, store, out = farm
    pid_file = tmp_path / "pid"
    raw = one_step(f"echo $$ > {pid_file}; exec sleep 120")
    job_id = submit(db, schemas.OpenJDSource(template=raw))
    dispatcher = Dispatcher(db, store, out)
    tick_until(dispatcher, lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    pid = int(pid_file.read_text())
    assert _pid_alive(pid)
    with db.session() as session:
        user = session.scalars(select(m.User)).first()
        assert user is not None
        control.request(session, user, job_id, JobAction.CANCEL)
    tick_until(dispatcher, lambda: not dispatcher._in_flight, timeout_s=60)
    deadline = time.monotonic() + 30
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _pid_alive(pid), "the cancelled task's command is still running"
    (tile,) = tiles(db, job_id, "run")
    assert tile.state == "cancelled"
    assert_tiles_accounted(db, job_id)


@pytest.mark.usefixtures("ray_local")
@pytest.mark.slow
def test_a_job_waits_for_a_job_and_for_an_asset_version(farm: Farm, tmp_path: Path) -> None:
    db, store, out = farm
    who = make_studio(db, "alpha")
    shot_id = make_shot(db, who)
    stamp = tmp_path / "stamps"
    stamp.mkdir()
    with db.session() as session:
        user = session.get_one(m.User, who.user_id)
        show_id = session.get_one(m.Shot, shot_id).show_id
        first = queries.submit_job(
            session,
            user,
            to_job_spec(
                schemas.OpenJDSource(template=one_step(f"sleep 1; date +%s.%N > {stamp}/first")),
                shot_id=shot_id,
                name="first",
            ),
        )
        blob = store.put_bytes(b"rig v1")
        queries.record_blob(
            session,
            who.studio_id,
            content_hash=blob.content_hash,
            size_bytes=6,
            storage_key=blob.storage_key,
        )
        v1 = queries.register_asset_version(
            session,
            user,
            show_id,
            schemas.AssetVersionCreate(asset="rig", content_hash=blob.content_hash),
        )
        spec = to_job_spec(
            schemas.OpenJDSource(template=one_step(f"date +%s.%N > {stamp}/second")),
            shot_id=shot_id,
            name="second",
        ).model_copy(
            update={
                "after_jobs": (first.id,),
                "after_assets": (schemas.AssetWait(asset_id=v1.asset_id, min_version=2),),
            }
        )
        second = queries.submit_job(session, user, spec)
    dispatcher = Dispatcher(db, store, out)
    tick_until(dispatcher, lambda: (stamp / "first").exists(), timeout_s=60)
    for _ in range(30):  # the first job is done, but version 2 of the rig is not published
        dispatcher.tick()
        time.sleep(0.05)
    assert not (stamp / "second").exists()
    with db.session() as session:
        waiting = session.get_one(m.Job, second.id)
        assert waiting.message == "waits for asset rig v2+ (newest v1)"
        assert waiting.dependencies_met is None
        user = session.get_one(m.User, who.user_id)
        v2 = queries.register_asset_version(
            session,
            user,
            show_id,
            schemas.AssetVersionCreate(asset="rig", content_hash=blob.content_hash),
        )
    dispatcher.run_until_done([second.id], timeout_s=60)
    with db.session() as session:
        done = session.get_one(m.Job, second.id)
        assert done.state == "done" and done.message == ""
        assert done.dependencies_met is not None
        assert done.dependencies_met["assets"] == {str(v1.asset_id): v2.id}
    assert float((stamp / "second").read_text()) > float((stamp / "first").read_text())


@pytest.mark.usefixtures("ray_local")
@pytest.mark.slow
def test_a_job_waiting_for_a_failed_job_is_cancelled_saying_why(farm: Farm) -> None:
    db, store, out = farm
    who = make_studio(db, "alpha")
    shot_id = make_shot(db, who)
    with db.session() as session:
        user = session.get_one(m.User, who.user_id)
        first = queries.submit_job(
            session,
            user,
            to_job_spec(schemas.OpenJDSource(template=one_step("exit 1")), shot_id=shot_id),
        )
        spec = to_job_spec(
            schemas.OpenJDSource(template=one_step("true")), shot_id=shot_id
        ).model_copy(update={"after_jobs": (first.id,)})
        second = queries.submit_job(session, user, spec)
        with pytest.raises(NotFound, match="after_jobs\\[0\\]: job 999 not found"):
            queries.submit_job(session, user, spec.model_copy(update={"after_jobs": (999,)}))
    Dispatcher(db, store, out, max_attempts=1).run_until_done([first.id, second.id], timeout_s=60)
    (tile,) = tiles(db, second.id, "run") or [None]
    with db.session() as session:
        assert session.get_one(m.Job, second.id).state == "cancelled"
    assert tile is None or tile.state == "cancelled"


def test_the_api_takes_a_template_and_names_what_it_refuses(farm: Farm, tmp_path: Path) -> None:
    db, _store, _out = farm
    who = make_studio(db, "alpha")
    shot_id = make_shot(db, who)
    with _api(farm) as api:
        text = (TEMPLATES / "pipeline.yaml").read_text()
        body = {"shot_id": shot_id, "template": text, "parameters": {"Out": str(tmp_path)}}
        answer = api.post("/jobs/openjd", json=body, headers=who.headers)
        assert answer.status_code == 201, answer.text
        layers = {layer["name"]: layer for layer in answer.json()["layers"]}
        assert layers["Comp_Frames"]["step"] == "Comp Frames"
        assert layers["Comp_Frames"]["wait_for"] == "layer"
        assert layers["Render"]["frames_total"] == 6
        bad = api.post(
            "/jobs/openjd",
            json={**body, "parameters": {"Out": str(tmp_path), "Frames": "a-b"}},
            headers=who.headers,
        )
        assert bad.status_code == 422 and bad.json()["field"] == "parameters", bad.text
        rival = make_studio(db, "rival")
        theirs = api.post("/jobs/openjd", json=body, headers=rival.headers)
        assert theirs.status_code == 404
        after = api.post("/jobs/openjd", json={**body, "after_jobs": [999]}, headers=who.headers)
        assert after.status_code == 404 and after.json()["field"] == "after_jobs"
        first = answer.json()["id"]
        waits = api.post("/jobs/openjd", json={**body, "after_jobs": [first]}, headers=who.headers)
        assert waits.status_code == 201 and waits.json()["dependencies_met"] is None


@pytest.mark.usefixtures("ray_local")
@pytest.mark.slow
def test_a_running_tasks_log_is_readable_while_it_runs(farm: Farm, tmp_path: Path) -> None:
    db, store, out = farm
    go = tmp_path / "go"
    raw = one_step(f"echo first line; while [ ! -f {go} ]; do sleep 0.1; done; echo last line")
    job_id, who = submit_as(db, schemas.OpenJDSource(template=raw))
    dispatcher = Dispatcher(db, store, out)
    with _api(farm) as api:
        headers = who.headers
        path = f"/jobs/{job_id}/layers/run/frames/1/tiles/0/log"
        seen: list[str] = []

        def live() -> bool:
            answer = api.get(path, headers=headers)
            if answer.status_code == 200 and "first line" in answer.text:
                seen.append(answer.text)
                return True
            return False

        tick_until(dispatcher, live, timeout_s=60)
        assert "last line" not in seen[0]
        go.touch()
        dispatcher.run_until_done([job_id], timeout_s=60)
        final = api.get(path, headers=headers)
        assert final.status_code == 200 and "last line" in final.text
        assert "x-log-live" not in final.headers


@pytest.mark.usefixtures("ray_local")
@pytest.mark.slow
def test_frame_by_frame_and_previous_frame_order_from_recorded_times(farm: Farm) -> None:
    """`sim` steps from its previous frame; `render` waits frame by frame for `sim`; `report`
    waits for all of `render`. Checked from the tiles' recorded start and finish times."""
    db, store, out = farm
    who = make_studio(db, "alpha")
    shot_id = make_shot(db, who)
    noop = {"kind": "noop", "pool": "cpu", "hold_s": 0.05}
    spec = schemas.JobSpec.model_validate(
        {
            "name": "ordered",
            "shot_id": shot_id,
            "frames": {"first": 1, "last": 4},
            "layers": [
                {"name": "report", **noop, "depends_on": ["render"], "wait_for": "layer"},
                {"name": "render", **noop, "depends_on": ["sim"]},
                {"name": "sim", **noop, "after_previous_frame": True},
            ],
        }
    )
    with db.session() as session:
        user = session.get_one(m.User, who.user_id)
        job_id = queries.submit_job(session, user, spec).id
    Dispatcher(db, store, out).run_until_done([job_id], timeout_s=120)
    sim, render, report = (
        {t.frame_id: t for t in tiles_of(db, job_id, name)} for name in ("sim", "render", "report")
    )
    sims, renders, reports = (
        sorted(x.values(), key=lambda t: t.frame_id) for x in (sim, render, report)
    )
    assert all(t.state == "done" for t in [*sims, *renders, *reports])
    for before, after in itertools.pairwise(sims):  # previous frame first
        assert after.started_at and before.finished_at and after.started_at >= before.finished_at
    for s, r in zip(sims, renders, strict=True):  # frame by frame
        assert r.started_at and s.finished_at and r.started_at >= s.finished_at
    last_render = max(t.finished_at for t in renders if t.finished_at)
    assert all(t.started_at and t.started_at >= last_render for t in reports)  # the whole layer

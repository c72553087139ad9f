"""Open Job Description templates through the farm (issue 22): expanded by openjd-model, run
task by task by openjd-sessions on the real dispatcher and local Ray, refused with a reason
when the farm cannot honour them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from farm import schemas
from farm.db import models as m
from farm.db import queries
from farm.db.session import Database
from farm.errors import InvalidSpec
from farm.openjd import decode_template, to_job_spec
from scheduler.dispatch.dispatcher import Dispatcher
from tests.conftest import Farm
from tests.factories import make_shot, make_studio
from tests.invariants import assert_tiles_accounted

TEMPLATES = Path(__file__).parent.parent / "openjd"
ARG = 'it\'s a "quoted" & $HOME arg'


def template(name: str) -> dict[str, Any]:
    return decode_template((TEMPLATES / name).read_text())


def submit(db: Database, source: schemas.OpenJDSource) -> int:
    who = make_studio(db, "alpha")
    shot_id = make_shot(db, who)
    spec = to_job_spec(source, shot_id=shot_id)
    with db.session() as session:
        user = session.get_one(m.User, who.user_id)
        return queries.submit_job(session, user, spec).id


def tiles(db: Database, job_id: int, layer: str) -> list[m.Tile]:
    with db.session() as session:
        return list(
            session.scalars(
                select(m.Tile)
                .join(m.Layer, m.Layer.id == m.Tile.layer_id)
                .join(m.Frame, m.Frame.id == m.Tile.frame_id)
                .where(m.Tile.job_id == job_id, m.Layer.name == layer)
                .order_by(m.Frame.number)
            )
        )


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

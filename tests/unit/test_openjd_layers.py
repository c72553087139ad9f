"""The farm's own layers as OpenJD steps (issue 22 item 3): a job spec written as a template
and read back is the same job; frames and tiles are the steps' task parameters."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from farm import schemas
from farm.errors import InvalidSpec
from farm.openjd import decode_template, to_job_spec
from farm.openjd_layers import template_yaml, to_template
from tests.factories import job_spec, small_camera

PARTICLES = Path(__file__).parent.parent / "openjd" / "particles.yaml"


def read_back(template: dict[str, Any], **parameters: str) -> schemas.JobSpec:
    source = schemas.OpenJDSource(template=template, parameters=parameters)
    return to_job_spec(source, shot_id=1, name="testjob")


def test_a_particle_job_written_as_a_template_reads_back_as_the_same_job() -> None:
    spec = job_spec(1, 7, frames=(1001, 1004), grid=(4, 4), particles=5000)
    assert read_back(yaml.safe_load(template_yaml(to_template(spec)))) == spec


def test_every_tiling_reads_back_and_its_tiles_are_the_tile_parameter() -> None:
    from openjd.model import StepParameterSpaceIterator

    from farm.openjd import build_job

    base = job_spec(1, 7, frames=(1, 3), size=(100, 50))
    for tiles in (
        {"balanced": 3},
        {"tile_width": 40, "tile_height": 20},  # 3 x 3 tiles of a 100 x 50 frame
        {"cols": 1, "rows": 1, "overscan": 0},
    ):
        render = base.layers[1].model_copy(update={"tiles": schemas.TilingSpec(**tiles)})
        spec = base.model_copy(update={"layers": (base.layers[0], render, base.layers[2])})
        template = to_template(spec)
        assert read_back(template) == spec
        job = build_job(schemas.OpenJDSource(template=template))[2].job
        render_step = next(s for s in job.steps if s.name == "render")
        tasks = list(StepParameterSpaceIterator(space=render_step.parameterSpace))
        per_frame = {"balanced": 3, "tile_width": 9, "cols": 1}[next(iter(tiles))]
        assert len(tasks) == 3 * per_frame
        assert {int(t["Tile"].value) for t in tasks} == set(range(per_frame))


def test_parameters_change_the_job_at_submit() -> None:
    spec = read_back(to_template(job_spec(1, 7, frames=(1, 8))), Frames="3-4", Resolution="32x16")
    assert (spec.frames.first, spec.frames.last) == (3, 4)
    assert spec.resolution == schemas.Resolution(width=32, height=16)


def test_a_hand_written_template_in_any_step_order_is_the_farms_job() -> None:
    spec = read_back(decode_template(PARTICLES.read_text()), Seed="12")
    assert [layer.name for layer in spec.layers] == ["sim", "render", "comp"]
    sim, render, comp = spec.layers
    assert sim.kind == "particle_sim" and sim.input_asset_version == 12
    assert render.depends_on == ("sim",) and render.tiles == schemas.TilingSpec(
        cols=2, rows=2, overscan=2
    )
    assert comp.kind == "assemble" and comp.depends_on == ("render",)
    assert spec.camera is not None and spec.camera.position == small_camera().position
    assert spec.openjd is None  # the farm's own executors run it, not openjd-sessions


def broken(change: Any) -> dict[str, Any]:
    template = copy.deepcopy(decode_template(PARTICLES.read_text()))
    change({s["name"]: s for s in template["steps"]}, template)
    return template


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda steps, t: steps["render"]["parameterSpace"]["taskParameterDefinitions"][
                1
            ].update(range=[0, 1, 2]),
            "step 'render': Tile must run 0-3: its tiles make 4 a frame",
        ),
        (
            lambda steps, t: steps["sim"]["script"].update(
                embeddedFiles=[{"name": "Options", "type": "TEXT", "data": "kind: particle_sim"}],
                actions={"onRun": {"command": "delta-layer", "args": ["{{Task.File.Options}}"]}},
            ),
            "step 'sim': a delta-layer step needs its layer's options in an embedded file",
        ),
        (
            lambda steps, t: steps["comp"]["script"]["embeddedFiles"][0].update(
                data="kind: assemble\nname: other\n"
            ),
            "step 'comp': file 'Layer' sets name",
        ),
        (
            lambda steps, t: steps["comp"]["script"]["embeddedFiles"][0].update(
                data="kind: assemble\ntiles:\n  cols: 2\n  rows: 2\n"
            ),
            "step 'comp': file 'Layer': ",
        ),
        (
            lambda steps, t: steps["comp"]["script"]["actions"]["onRun"].update(command="bash"),
            "step 'comp': a template mixes the farm's own layers (delta-layer) with command steps",
        ),
        (
            lambda steps, t: steps["sim"]["script"]["embeddedFiles"][0].update(
                data="kind: particle_sim\ninput_asset_version: {{Task.Param.Frame}}\n"
            ),
            "uses {{Task.Param.Frame}}",
        ),
        (
            lambda steps, t: t["parameterDefinitions"][2].update(default="wide"),
            "parameters: Resolution 'wide': give WIDTHxHEIGHT",
        ),
    ],
)
def test_a_template_the_farm_cannot_run_is_refused_saying_what_to_fix(
    change: Any, message: str
) -> None:
    with pytest.raises(InvalidSpec) as caught:
        read_back(broken(change), Seed="3")
    assert message in caught.value.message


def test_frames_and_tiles_paired_instead_of_combined_are_refused() -> None:
    def change(steps: dict[str, Any], template: dict[str, Any]) -> None:
        steps["render"]["parameterSpace"]["combination"] = "(Frame, Tile)"

    with pytest.raises(InvalidSpec, match="step 'render': every frame runs every tile"):
        read_back(broken(change), Seed="3", Frames="1-4")


def test_different_frames_per_step_are_refused() -> None:
    def change(steps: dict[str, Any], template: dict[str, Any]) -> None:
        steps["comp"]["parameterSpace"]["taskParameterDefinitions"][0]["range"] = "1-1"

    with pytest.raises(InvalidSpec, match="share its frames"):
        read_back(broken(change), Seed="3")


def test_a_spec_that_waits_for_other_jobs_is_not_written_as_a_template() -> None:
    spec = job_spec(1, 7).model_copy(update={"after_jobs": (4,)})
    with pytest.raises(InvalidSpec, match="--after"):
        to_template(spec)


def test_a_step_of_ten_billion_tasks_is_refused_without_listing_them() -> None:
    def change(steps: dict[str, Any], template: dict[str, Any]) -> None:
        steps["render"]["parameterSpace"]["taskParameterDefinitions"] = [
            {"name": "Frame", "type": "INT", "range": "0-99999"},
            {"name": "Tile", "type": "INT", "range": "0-99999"},
        ]

    with pytest.raises(InvalidSpec, match="10,000,000,000 tasks"):
        read_back(broken(change), Seed="3")


def test_a_frame_parameter_that_is_not_whole_numbers_is_refused() -> None:
    def change(steps: dict[str, Any], template: dict[str, Any]) -> None:
        for step in steps.values():
            step["parameterSpace"]["taskParameterDefinitions"][0] = {
                "name": "Frame",
                "type": "STRING",
                "range": ["a", "b"],
            }

    with pytest.raises(InvalidSpec, match="Frame must be INT"):
        read_back(broken(change), Seed="3")


def test_farm_template_writes_a_readable_file_and_refuses_a_missing_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from studio_client.cli import main

    spec = tmp_path / "job.json"
    spec.write_text(job_spec(1, 7).model_dump_json())
    out = tmp_path / "job.yaml"
    assert main(["template", str(spec), "-o", str(out)]) == 0
    assert out.stat().st_mode & 0o044  # others may read it, as any new file
    assert read_back(yaml.safe_load(out.read_text())) == job_spec(1, 7)
    capsys.readouterr()
    assert main(["template", str(spec), "-o", str(tmp_path / "nowhere" / "job.yaml")]) == 2
    err = capsys.readouterr().err
    assert "no folder" in err and "Traceback" not in err
    assert not (tmp_path / "nowhere").exists()

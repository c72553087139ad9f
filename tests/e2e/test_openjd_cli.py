"""`farm submit TEMPLATE.yaml -p ... --wait`, `farm status --json` and `farm log` against a
real server (issue 22): exit 0 only when the job succeeded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scheduler.embedded import EmbeddedFarm
from studio_client import Client
from studio_client.cli import main
from tests.factories import make_studio

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]
TEMPLATES = Path(__file__).parent.parent / "openjd"


def test_submit_a_template_wait_read_its_status_and_logs(
    farm: EmbeddedFarm,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    who = make_studio(farm.context.db, "nimble")
    client = Client(farm.url, who.token)
    show = client.create_show("seamonster")
    client.create_shot(show.id, "sh0100", sequence="sq010")
    monkeypatch.setenv("FARM_API_URL", farm.url)
    monkeypatch.setenv("FARM_TOKEN", who.token)
    work = tmp_path / "work"
    work.mkdir()
    template = str(TEMPLATES / "pipeline.yaml")
    argv = ["submit", template, "-p", f"Out={work}", "-p", "Frames=1-2"]
    assert main([*argv, "--show", "seamonster", "--shot", "sq010/sh0100", "--wait"]) == 0
    assert "submitted job" in capsys.readouterr().out
    assert (work / "comp.2.txt").exists()
    job_id = client.jobs()[0].id
    assert main(["status", str(job_id), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == "done"
    assert [
        (layer["name"], layer["step"], layer["tasks"], layer["task_states"], layer["depends_on"])
        for layer in status["layers"]
    ] == [
        ("Comp_Frames", "Comp Frames", 2, {"done": 2}, ["Render"]),
        ("Render", "Render", 4, {"done": 4}, []),
    ]
    assert main(["log", str(job_id), "--layer", "Render", "--frame", "3"]) == 0
    assert "marker-task" in capsys.readouterr().out
    # A task that fails: --wait exits 1; the log says what the command printed.
    failing = tmp_path / "fail.yaml"
    failing.write_text(
        "specificationVersion: jobtemplate-2023-09\n"
        "name: fails\n"
        "steps:\n"
        "  - name: run\n"
        "    script:\n"
        "      actions:\n"
        "        onRun:\n"
        "          command: bash\n"
        "          args: ['-c', 'echo no plate here; exit 2']\n"
    )
    shot_id = client.shots(show.id)[0].id
    assert main(["submit", str(failing), "--shot", str(shot_id), "--wait"]) == 1
    capsys.readouterr()
    failed_id = client.jobs()[0].id
    assert main(["log", str(failed_id)]) == 0
    assert "no plate here" in capsys.readouterr().out
    # Refused before anything runs: one line, exit 2.
    assert main(["submit", template, "--shot", str(shot_id), "-p", "Nope=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: parameters:")


def test_a_particle_job_as_a_template_renders_the_same_frames_as_its_spec(
    farm: EmbeddedFarm,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 22 item 3: `farm template SPEC.json` writes the farm's own layers as an OpenJD
    template (tiles as a task parameter); submitted back, it is the same job, frame for frame."""
    import numpy as np

    from farm.exr.io import read_exr
    from tests.factories import job_spec, write_seed

    who = make_studio(farm.context.db, "nimble")
    client = Client(farm.url, who.token)
    show = client.create_show("seamonster")
    shot = client.create_shot(show.id, "sh0100", sequence="sq010")
    version = client.publish(show.id, write_seed(tmp_path / "seed.dpc", count=300), asset="seed")
    spec_file = tmp_path / "job.json"
    spec_file.write_text(
        job_spec(shot.id, version.id, size=(48, 32), grid=(2, 2)).model_dump_json()
    )
    monkeypatch.setenv("FARM_API_URL", farm.url)
    monkeypatch.setenv("FARM_TOKEN", who.token)

    template = tmp_path / "job.yaml"
    assert main(["template", str(spec_file), "--out", str(template)]) == 0
    assert "3 steps" in " ".join(capsys.readouterr().out.split())
    assert main(["submit", str(spec_file), "--wait"]) == 0
    assert main(["submit", str(template), "--shot", str(shot.id), "--wait"]) == 0
    capsys.readouterr()
    native, templated = sorted(client.jobs(), key=lambda job: job.id)
    assert main(["status", str(templated.id), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [(layer["name"], layer["kind"], layer["tile_states"]) for layer in status["layers"]] == [
        ("sim", "particle_sim", {"done": 2}),
        ("render", "particle_render", {"done": 8}),  # 2 frames x 4 tiles: 8 tasks
        ("comp", "assemble", {"done": 2}),
    ]
    for job in (native, templated):
        assert main(["fetch", str(job.id), "--out", str(tmp_path / str(job.id))]) == 0
    ours = sorted((tmp_path / str(native.id)).rglob("*.exr"))
    theirs = sorted((tmp_path / str(templated.id)).rglob("*.exr"))
    assert len(ours) == len(theirs) == 2
    for a, b in zip(ours, theirs, strict=True):
        left, right = read_exr(a), read_exr(b)
        assert left.channels.keys() == right.channels.keys()
        for name in left.channels:
            assert np.array_equal(left.channels[name], right.channels[name]), name
    # A broken template is refused with one line and exit 2; nothing is submitted.
    template.write_text(template.read_text().replace("range: 0-3", "range: 0-2"))
    assert main(["submit", str(template), "--shot", str(shot.id)]) == 2
    assert "Tile must run 0-3" in capsys.readouterr().err
    assert len(client.jobs()) == 2

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

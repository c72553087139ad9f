"""A whole shot through the real server: SDK upload over HTTP, CLI commands, EXR frames, costs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from farm.exr.io import read_exr
from scheduler.embedded import EmbeddedFarm
from studio_client import Client
from studio_client.cli import main
from tests.factories import job_spec, make_studio, write_seed

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]


def test_a_shot_from_upload_to_frames_and_a_cost_report(
    farm: EmbeddedFarm,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    who = make_studio(farm.context.db, "nimble")
    client = Client(farm.url, who.token)
    show = client.create_show("seamonster")
    shot = client.create_shot(show.id, "sh0100", sequence="sq010")
    seed = write_seed(tmp_path / "seed.dpc", count=300)
    version = client.publish(show.id, seed, asset="seed", kind="particle_seed")
    assert version.version == 1
    # Publishing the same bytes again sends nothing and makes version 2 of the same blob.
    again = client.upload(seed)
    assert again.created is False
    spec = job_spec(shot.id, version.id, frames=(1, 2), size=(48, 32), grid=(2, 2))
    spec_file = tmp_path / "job.json"
    spec_file.write_text(spec.model_dump_json())

    monkeypatch.setenv("FARM_API_URL", farm.url)
    monkeypatch.setenv("FARM_TOKEN", who.token)
    assert main(["submit", str(spec_file), "--wait"]) == 0
    out = capsys.readouterr().out
    assert "submitted job" in out
    job_id = client.jobs()[0].id
    job = client.job(job_id)
    assert job.state == "done"
    frames = [f for layer in job.layers if layer.kind == "assemble" for f in layer.frames]
    assert all(f.output_hash and f.preview_hash for f in frames)
    # The frames come back through the API (`farm fetch`), verified, never as server paths.
    assert main(["fetch", str(job_id), "--out", str(tmp_path / "fetched")]) == 0
    assert "downloaded" in capsys.readouterr().out
    fetched = sorted((tmp_path / "fetched").rglob("*.exr"))
    assert [p.name for p in fetched] == [f.file_name for f in frames]
    assert all(read_exr(p).width > 0 for p in fetched)

    assert main(["status", str(job_id)]) == 0
    assert "render" in capsys.readouterr().out
    assert main(["check-frames", str(job_id)]) == 0
    assert "all 2 frames" in capsys.readouterr().out

    report = client.report(show.id)
    assert report.total > 0
    assert {line.key for line in report.by_pool} == {"cpu", "h100"}
    assert {line.key for line in report.by_department} == {"fx", "lighting", "comp"}
    assert report.by_shot[0].key == "sq010/sh0100"
    assert main(["report", "--show", "seamonster"]) == 0
    assert "by department" in capsys.readouterr().out


def test_cli_bad_spec_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = job_spec(1, 1).model_dump(mode="json")
    spec["layers"][1]["kind"] = "volume"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    monkeypatch.setenv("FARM_TOKEN", "x")
    assert main(["submit", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: ") and "layers[1].kind" in err[0]


def test_cli_unreachable_farm_is_one_line_and_exit_5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FARM_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("FARM_TOKEN", "x")
    assert main(["status", "1"]) == 5
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the farm" in err[0]


def test_cli_unknown_token_is_exit_3(
    farm: EmbeddedFarm, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FARM_API_URL", farm.url)
    monkeypatch.setenv("FARM_TOKEN", "not-a-token")
    assert main(["status", "1"]) == 3
    assert capsys.readouterr().err.startswith("error: unknown API token")


def test_cli_missing_file_and_bad_json_are_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FARM_TOKEN", "x")
    assert main(["submit", str(tmp_path / "nope.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "broken.json").write_text("{")
    assert main(["submit", str(tmp_path / "broken.json")]) == 2
    assert "not JSON" in capsys.readouterr().err

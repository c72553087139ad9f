"""Downloads (issue 21): frames, previews, contact sheets and asset versions come back as
verified bytes through the API and ``farm fetch``, never as paths on the farm's disks."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from farm.api.app import create_app
from farm.api.context import FarmContext
from farm.db import models as m
from farm.db.session import Database
from farm.errors import Conflict, InvalidSpec, NotFound
from farm.storage import DiskStore
from studio_client import Client
from studio_client.cli import fetch as fetch_cli
from studio_client.cli import main
from tests.factories import StudioUser, job_spec, make_shot, make_studio
from tests.integration.test_api import seed_version, shot_and_show


@pytest.fixture
def store(tmp_path: Path) -> DiskStore:
    return DiskStore(tmp_path / "blobs")


@pytest.fixture
def api(db: Database, store: DiskStore, tmp_path: Path) -> Iterator[TestClient]:
    context = FarmContext(db=db, store=store, output_root=tmp_path / "out")
    with TestClient(create_app(context)) as client:
        yield client


@pytest.fixture
def who(db: Database) -> StudioUser:
    return make_studio(db, "nimble")


def client_for(api: TestClient, who: StudioUser) -> Client:
    return Client("http://testserver", who.token, transport=api._transport)


def assembled_job(
    api: TestClient, db: Database, store: DiskStore, who: StudioUser, tmp_path: Path
) -> tuple[int, dict[int, bytes]]:
    """A submitted 3-frame job whose comp layer wrote frames 1 and 2 (as the dispatcher
    records an assembly: the EXR's hash, its path on the node, the preview's hash) and a
    contact sheet; frame 3 still renders. Returns the job id and each frame's EXR bytes."""
    shot_id, show_id = shot_and_show(db, who)
    spec = job_spec(shot_id, seed_version(api, who, show_id, tmp_path), frames=(1, 3))
    answer = api.post("/jobs", json=spec.model_dump(mode="json"), headers=who.headers)
    job_id = int(answer.json()["id"])
    written: dict[int, bytes] = {}
    with db.session() as session:
        comp = session.scalars(
            select(m.Layer).where(m.Layer.job_id == job_id, m.Layer.name == "comp")
        ).one()
        for frame in session.scalars(select(m.Frame).where(m.Frame.layer_id == comp.id)):
            if frame.number == 3:
                frame.state = "running"
                continue
            written[frame.number] = os.urandom(5000) + b"exr%d" % frame.number
            frame.state = "done"
            frame.output_hash = store.put_bytes(written[frame.number]).content_hash
            frame.output_path = f"/farm/secret/out/sh010_comp.{frame.number:04d}.exr"
            frame.preview_hash = store.put_bytes(b"\x89PNG%d" % frame.number).content_hash
        comp.contact_sheet_hash = store.put_bytes(b"\x89PNG sheet").content_hash
    return job_id, written


def test_a_jobs_frames_come_back_verified_named_as_written_and_only_once(
    api: TestClient, db: Database, store: DiskStore, who: StudioUser, tmp_path: Path
) -> None:
    job_id, written = assembled_job(api, db, store, who, tmp_path)
    answer = api.get(f"/jobs/{job_id}", headers=who.headers)
    assert "/farm/secret" not in answer.text and "output_path" not in answer.text
    client = client_for(api, who)
    sent: list[bool] = []
    paths = client.fetch(job_id, tmp_path / "got", on_file=lambda _item, s: sent.append(s))
    folder = tmp_path / "got" / f"job{job_id}_testjob" / "comp"
    assert sorted(p.relative_to(folder).as_posix() for p in paths) == [
        "contact_sheet.png",
        "sh010_comp.0001.exr",
        "sh010_comp.0001.png",
        "sh010_comp.0002.exr",
        "sh010_comp.0002.png",
    ]
    assert (folder / "sh010_comp.0002.exr").read_bytes() == written[2]
    assert (folder / "sh010_comp.0001.png").read_bytes() == b"\x89PNG1"
    assert sent == [True] * 5
    # Again: everything is there with the right bytes, nothing is downloaded.
    sent.clear()
    client.fetch(job_id, tmp_path / "got", on_file=lambda _item, s: sent.append(s))
    assert sent == [False] * 5
    # The HTTP answer names the bytes' hash, size and file name, not where they lie.
    frame = api.get(f"/jobs/{job_id}/layers/comp/frames/1/exr", headers=who.headers)
    assert frame.status_code == 200 and frame.content == written[1]
    assert frame.headers["x-content-sha256"] == hashlib.sha256(written[1]).hexdigest()
    assert frame.headers["content-length"] == str(len(written[1]))
    assert 'filename="sh010_comp.0001.exr"' in frame.headers["content-disposition"]
    assert frame.headers["content-type"] == "image/x-exr"


def test_what_is_not_there_yet_or_not_yours_is_a_404_saying_so(
    api: TestClient, db: Database, store: DiskStore, who: StudioUser, tmp_path: Path
) -> None:
    job_id, _ = assembled_job(api, db, store, who, tmp_path)
    base = f"/jobs/{job_id}/layers"
    rendering = api.get(f"{base}/comp/frames/3/exr", headers=who.headers)
    assert (
        rendering.status_code == 404
        and "running; fetch it once it is done" in (rendering.json()["message"])
    )
    no_layer = api.get(f"{base}/beauty/frames/1/exr", headers=who.headers)
    assert no_layer.status_code == 404
    assert "no layer 'beauty' (its layers: sim, render, comp)" in no_layer.json()["message"]
    no_frame = api.get(f"{base}/comp/frames/9/preview", headers=who.headers)
    assert no_frame.status_code == 404 and "no frame 9" in no_frame.json()["message"]
    assert api.get(f"{base}/comp/frames/1/thumbnail", headers=who.headers).status_code == 422
    # Another studio: the same answer as a job that does not exist, for every download.
    rival = make_studio(db, "rival")
    for path in (f"{base}/comp/frames/1/exr", f"{base}/comp/contact-sheet"):
        theirs = api.get(path, headers=rival.headers)
        missing = api.get(path.replace(f"/jobs/{job_id}/", "/jobs/999999/"), headers=rival.headers)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json()["message"] == f"job {job_id} not found"
    own_blob = hashlib.sha256(b"\x89PNG sheet").hexdigest()
    assert api.get(f"/blobs/{own_blob}", headers=rival.headers).status_code == 404


def test_bytes_that_do_not_match_their_hash_are_refused_and_nothing_is_kept(
    api: TestClient, db: Database, store: DiskStore, who: StudioUser, tmp_path: Path
) -> None:
    job_id, written = assembled_job(api, db, store, who, tmp_path)
    damaged = store.path(hashlib.sha256(written[2]).hexdigest())
    damaged.chmod(0o644)
    damaged.write_bytes(b"bit rot")
    client = client_for(api, who)
    with pytest.raises(Conflict, match="the download was corrupted; nothing was kept"):
        client.fetch(job_id, tmp_path / "got", previews=False)
    folder = tmp_path / "got" / f"job{job_id}_testjob" / "comp"
    assert sorted(p.name for p in folder.iterdir()) == ["sh010_comp.0001.exr"]  # no temp file


def test_an_asset_version_downloads_for_its_owner_and_a_grantee_until_revoked(
    api: TestClient, db: Database, who: StudioUser, tmp_path: Path
) -> None:
    tree = tmp_path / "rig"
    (tree / "textures").mkdir(parents=True)
    (tree / "textures" / "skin #1.png").write_bytes(b"skin")
    (tree / "rig.py").write_bytes(b"print('rig')")
    (tree / "rig.py").chmod(0o755)
    make_shot(db, who)
    owner = client_for(api, who)
    version = owner.publish(owner.show("show").id, tree, asset="creatures/rig", kind="other")
    assert owner.fetch_asset_version(version.id, tmp_path / "mine")
    assert (tmp_path / "mine" / "textures" / "skin #1.png").read_bytes() == b"skin"
    assert (tmp_path / "mine" / "rig.py").stat().st_mode & 0o777 == 0o755
    rival = make_studio(db, "rival")
    theirs = client_for(api, rival)
    with pytest.raises(NotFound, match=f"asset version {version.id} not found"):
        theirs.fetch_asset_version(version.id, tmp_path / "theirs")
    share = owner.share("rival", asset_id=version.asset_id)
    theirs.fetch_asset_version(version.id, tmp_path / "theirs")
    assert (tmp_path / "theirs" / "rig.py").read_bytes() == b"print('rig')"
    # A file of the version by its path; a single file's version has no files.
    one = api.get(f"/asset-versions/{version.id}/files/rig.py", headers=rival.headers)
    assert one.status_code == 200 and one.content == b"print('rig')"
    nope = api.get(f"/asset-versions/{version.id}/files/nope.py", headers=rival.headers)
    assert nope.status_code == 404 and "no file 'nope.py'" in nope.json()["message"]
    # Yet the grantee never reads the owner's blobs by hash: only through the version.
    skin = hashlib.sha256(b"skin").hexdigest()
    assert api.get(f"/blobs/{skin}", headers=rival.headers).status_code == 404
    assert api.get(f"/blobs/{skin}", headers=who.headers).content == b"skin"
    owner.revoke_share(share.id)
    answer = api.get(f"/asset-versions/{version.id}/content", headers=rival.headers)
    assert answer.status_code == 404


def test_farm_fetch_prints_where_and_what_and_errors_in_one_line(
    api: TestClient,
    db: Database,
    store: DiskStore,
    who: StudioUser,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    job_id, _ = assembled_job(api, db, store, who, tmp_path)
    monkeypatch.setattr(fetch_cli, "make_client", lambda url, token: client_for(api, who))
    out = tmp_path / "fetched"
    assert main(["fetch", str(job_id), "--out", str(out), "--no-previews"]) == 0
    said = capsys.readouterr().out
    assert "2 files" in said and "2 downloaded" in said
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == [
        "sh010_comp.0001.exr",
        "sh010_comp.0002.exr",
    ]
    assert main(["fetch", str(job_id), "--out", str(out), "--no-previews"]) == 0
    assert "0 downloaded" in capsys.readouterr().out
    assert main(["fetch", str(job_id), "--out", str(out), "--layer", "beauty"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no layer 'beauty'" in err[0]
    assert main(["fetch", "999999", "--out", str(out)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: job 999999 not found"]
    assert main(["fetch", "--out", str(out)]) == 2


def test_a_job_without_frames_says_yet_only_while_it_runs(
    api: TestClient,
    db: Database,
    store: DiskStore,
    who: StudioUser,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shot_id, show_id = shot_and_show(db, who)
    spec = job_spec(shot_id, seed_version(api, who, show_id, tmp_path), frames=(1, 1))
    job_id = int(
        api.post("/jobs", json=spec.model_dump(mode="json"), headers=who.headers).json()["id"]
    )
    monkeypatch.setattr(fetch_cli, "make_client", lambda url, token: client_for(api, who))
    out = tmp_path / "fetched"
    assert main(["fetch", str(job_id), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"job {job_id} (waiting) has no finished frames yet"
    with db.session() as session:
        session.get_one(m.Job, job_id).state = "cancelled"
    assert main(["fetch", str(job_id), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"job {job_id} (cancelled) made no frames to fetch"


def test_a_layer_without_files_is_refused_by_name(
    api: TestClient, db: Database, store: DiskStore, who: StudioUser, tmp_path: Path
) -> None:
    job_id, _ = assembled_job(api, db, store, who, tmp_path)
    with pytest.raises(InvalidSpec, match="has no layer 'beauty'"):
        client_for(api, who).fetch(job_id, tmp_path / "got", layers=["beauty"])


def test_asset_names_hold_folders_and_a_bad_one_is_refused_before_sending(
    api: TestClient, db: Database, who: StudioUser, tmp_path: Path
) -> None:
    make_shot(db, who)
    client = client_for(api, who)
    show = client.show("show")
    path = tmp_path / "notes.txt"
    path.write_bytes(b"notes")
    version = client.publish(show.id, path, asset="creatures/seamonster/notes")
    assert version.asset == "creatures/seamonster/notes"
    client.fetch_asset_version(version.id, tmp_path / "got")
    assert (tmp_path / "got" / "notes").read_bytes() == b"notes"
    for bad in ("creatures//seamonster", "/creatures", "creatures/../x", "a" * 129):
        with pytest.raises(InvalidSpec, match="not a valid asset name"):
            client.publish(show.id, path, asset=bad)

"""The API through FastAPI's test client: auth, isolation between studios, assets, bad specs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from farm.api.app import create_app
from farm.api.context import FarmContext
from farm.db import models as m
from farm.db.session import Database
from farm.particles.cache import write_cache
from farm.storage import DiskStore
from tests.factories import StudioUser, job_spec, make_shot, make_studio, small_frame


@pytest.fixture
def api(db: Database, tmp_path: Path) -> Iterator[TestClient]:
    context = FarmContext(db=db, store=DiskStore(tmp_path / "blobs"), output_root=tmp_path / "out")
    with TestClient(create_app(context)) as client:
        yield client


def upload(api: TestClient, who: StudioUser, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    response = api.put(f"/blobs/{digest}", content=data, headers=who.headers)
    assert response.status_code == 201, response.text
    return digest


def seed_version(
    api: TestClient, who: StudioUser, show_id: int, tmp_path: Path, frame: Any = None
) -> int:
    path = tmp_path / "seed.dpc"
    write_cache(path, [frame if frame is not None else small_frame(50)])
    digest = upload(api, who, path.read_bytes())
    response = api.post(
        f"/shows/{show_id}/asset-versions",
        json={"asset": "seed", "kind": "particle_seed", "content_hash": digest},
        headers=who.headers,
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def shot_and_show(db: Database, who: StudioUser) -> tuple[int, int]:
    shot_id = make_shot(db, who)
    with db.session() as session:
        return shot_id, session.get_one(m.Shot, shot_id).show_id


def test_no_token_is_401_with_a_message(api: TestClient) -> None:
    response = api.get("/shows")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"
    assert "Authorization: Bearer" in response.json()["message"]


def test_unknown_token_is_401(api: TestClient) -> None:
    response = api.get("/shows", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401


def test_shows_and_shots_round_trip(api: TestClient, db: Database) -> None:
    who = make_studio(db, "alpha")
    response = api.post("/shows", json={"name": "seamonster", "title": "Sea"}, headers=who.headers)
    assert response.status_code == 201
    show_id = response.json()["id"]
    shot = api.post(
        f"/shows/{show_id}/shots", json={"name": "sh0100", "sequence": "sq010"}, headers=who.headers
    )
    assert shot.status_code == 201, shot.text
    assert shot.json()["sequence"] == "sq010"
    shots = api.get(f"/shows/{show_id}/shots", headers=who.headers).json()
    assert [s["name"] for s in shots["items"]] == ["sh0100"]
    again = api.post("/shows", json={"name": "seamonster"}, headers=who.headers)
    assert again.status_code == 409


def test_another_studios_job_show_and_blob_are_404(
    api: TestClient, db: Database, tmp_path: Path
) -> None:
    alpha, beta = make_studio(db, "alpha"), make_studio(db, "beta")
    shot_id, show_id = shot_and_show(db, alpha)
    version = seed_version(api, alpha, show_id, tmp_path)
    job = api.post(
        "/jobs", json=job_spec(shot_id, version).model_dump(mode="json"), headers=alpha.headers
    )
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    assert api.get(f"/jobs/{job_id}", headers=alpha.headers).status_code == 200
    for path in (
        f"/jobs/{job_id}",
        f"/shows/{show_id}",
        f"/shows/{show_id}/report",
        f"/jobs/{job_id}/check",
    ):
        response = api.get(path, headers=beta.headers)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"
    assert api.get("/jobs", headers=beta.headers).json() == {"items": [], "next_cursor": None}
    # Beta cannot use alpha's blob by knowing its hash, nor learn that it exists.
    with db.session() as session:
        alpha_hash = session.scalars(select(m.AssetVersion.content_hash)).first()
    assert api.head(f"/blobs/{alpha_hash}", headers=beta.headers).status_code == 404
    assert api.post("/blobs/missing", json={"hashes": [alpha_hash]}, headers=beta.headers).json()[
        "missing"
    ] == [alpha_hash]
    # Beta submitting against alpha's shot or asset version is refused too.
    theirs = api.post(
        "/jobs", json=job_spec(shot_id, version).model_dump(mode="json"), headers=beta.headers
    )
    assert theirs.status_code == 404
    assert theirs.json()["field"] == "shot_id"


def test_upload_verifies_the_hash_and_stores_nothing_on_mismatch(
    api: TestClient, db: Database, tmp_path: Path
) -> None:
    who = make_studio(db, "alpha")
    wrong = hashlib.sha256(b"other bytes").hexdigest()
    response = api.put(f"/blobs/{wrong}", content=b"these bytes", headers=who.headers)
    assert response.status_code == 409
    assert "hash to" in response.json()["message"]
    assert api.post("/blobs/missing", json={"hashes": [wrong]}, headers=who.headers).json() == {
        "missing": [wrong]
    }
    assert not any(p.is_file() and p.parent.name != "tmp" for p in (tmp_path / "blobs").rglob("*"))


def test_upload_then_only_missing_hashes_are_asked_for(api: TestClient, db: Database) -> None:
    who = make_studio(db, "alpha")
    have = upload(api, who, b"cache bytes")
    other = hashlib.sha256(b"not sent").hexdigest()
    missing = api.post("/blobs/missing", json={"hashes": [have, other]}, headers=who.headers)
    assert missing.json() == {"missing": [other]}
    assert api.head(f"/blobs/{have}", headers=who.headers).status_code == 200
    again = api.put(f"/blobs/{have}", content=b"cache bytes", headers=who.headers)
    assert again.json()["created"] is False


def test_bad_hash_in_path_is_422(api: TestClient, db: Database) -> None:
    who = make_studio(db, "alpha")
    response = api.put("/blobs/xyz", content=b"x", headers=who.headers)
    assert response.status_code == 422
    assert response.json()["field"] == "content_hash"


def count_jobs(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count(m.Job.id))) or 0)


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        (
            lambda s: s["layers"][1].update(kind="volume_render"),
            "layers[1].kind",
            "particle_render",
        ),
        (lambda s: s.update(frames={"first": 5, "last": 1}), "frames", "empty frame range"),
        (lambda s: s.update(frames={"first": -1, "last": 1}), "frames.first", ">= 0"),
        (lambda s: s["layers"][1]["tiles"].update(cols=500), "layers[1].tiles.cols", "at most 64"),
        (lambda s: s["layers"][2].update(depends_on=["grade"]), "layers[2].depends_on", "grade"),
        (
            lambda s: s["layers"][0].update(input_asset_version=99999),
            "layers[0].input_asset_version",
            "does not exist",
        ),
        (lambda s: s["layers"][1].update(pool="quantum"), "layers[1].pool", "unknown pool"),
    ],
)
def test_bad_specs_are_422_naming_the_field_and_write_nothing(
    api: TestClient, db: Database, tmp_path: Path, mutate: Any, field: str, words: str
) -> None:
    assert_spec_refused(api, db, tmp_path, mutate, field, words)


def assert_spec_refused(
    api: TestClient, db: Database, tmp_path: Path, mutate: Any, field: str, words: str
) -> None:
    """A valid job spec, changed by ``mutate``, is a 422 naming ``field`` and writes no job."""
    who = make_studio(db, "alpha")
    shot_id, show_id = shot_and_show(db, who)
    version = seed_version(api, who, show_id, tmp_path)
    raw = job_spec(shot_id, version).model_dump(mode="json")
    mutate(raw)
    before = count_jobs(db)
    response = api.post("/jobs", json=raw, headers=who.headers)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_spec"
    assert body["field"] == field
    assert words.replace(">= 0", "greater than or equal to 0") in body["message"]
    assert count_jobs(db) == before


def test_bad_particles_in_a_seed_are_refused_before_any_tile(
    api: TestClient, db: Database, tmp_path: Path
) -> None:
    who = make_studio(db, "alpha")
    shot_id, show_id = shot_and_show(db, who)
    frame = small_frame(50)
    frame.position[17, 1] = float("nan")
    path = tmp_path / "seed.dpc"
    write_cache(path, [frame])
    digest = upload(api, who, path.read_bytes())
    # Checked once, when the version is published: no version, so no job can use it.
    response = api.post(
        f"/shows/{show_id}/asset-versions",
        json={"asset": "seed", "kind": "particle_seed", "content_hash": digest},
        headers=who.headers,
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == "content_hash"
    assert "asset 'seed'" in body["message"] and "position[17]" in body["message"]
    assert str(tmp_path) not in body["message"]
    # Published as a plain file, it is checked (once) when a job first reads it as particles.
    plain = api.post(
        f"/shows/{show_id}/asset-versions",
        json={"asset": "seed", "kind": "other", "content_hash": digest},
        headers=who.headers,
    )
    assert plain.status_code == 201, plain.text
    response = api.post(
        "/jobs",
        json=job_spec(shot_id, plain.json()["id"]).model_dump(mode="json"),
        headers=who.headers,
    )
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "layers[0].input_asset_version"
    assert "position[17]" in body["message"]
    assert count_jobs(db) == 0


def test_a_published_cache_records_its_frames_and_jobs_outside_them_are_refused(
    api: TestClient, db: Database, tmp_path: Path
) -> None:
    who = make_studio(db, "alpha")
    shot_id, show_id = shot_and_show(db, who)
    path = tmp_path / "cache.dpc"
    write_cache(path, [small_frame(50, frame=1), small_frame(40, frame=2, seed=3)])
    digest = upload(api, who, path.read_bytes())
    response = api.post(
        f"/shows/{show_id}/asset-versions",
        json={"asset": "cache", "kind": "particle_cache", "content_hash": digest},
        headers=who.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["meta"] == {"frames": [1, 2], "particles": 50}
    version = response.json()["id"]
    spec = job_spec(shot_id, version, frames=(1, 3)).model_dump(mode="json")
    spec["layers"] = [
        spec["layers"][1] | {"depends_on": [], "input_asset_version": version},
        spec["layers"][2],
    ]
    response = api.post("/jobs", json=spec, headers=who.headers)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "layers[0].input_asset_version"
    assert "has no frame 3" in response.json()["message"]
    spec["frames"] = {"first": 1, "last": 2}
    assert api.post("/jobs", json=spec, headers=who.headers).status_code == 201


def test_a_good_job_is_stored_with_its_frames(
    api: TestClient, db: Database, tmp_path: Path
) -> None:
    who = make_studio(db, "alpha")
    shot_id, show_id = shot_and_show(db, who)
    version = seed_version(api, who, show_id, tmp_path)
    response = api.post(
        "/jobs",
        json=job_spec(shot_id, version, frames=(1, 3)).model_dump(mode="json"),
        headers=who.headers,
    )
    assert response.status_code == 201
    job = response.json()
    assert job["state"] == "waiting"
    assert [len(layer["frames"]) for layer in job["layers"]] == [3, 3, 3]
    listed = api.get("/jobs", headers=who.headers).json()
    assert [j["id"] for j in listed["items"]] == [job["id"]]


def test_producers_cannot_submit(api: TestClient, db: Database) -> None:
    from farm.vocab import Role

    producer = make_studio(db, "gamma", role=Role.PRODUCER)
    response = api.post("/jobs", json={}, headers=producer.headers)
    assert response.status_code == 403
    assert "producer" in response.json()["message"]


def test_openapi_is_served(api: TestClient) -> None:
    assert "/jobs" in api.get("/openapi.json").json()["paths"]


def test_out_of_range_ids_and_bad_json_are_422_not_500(api: TestClient, db: Database) -> None:
    who = make_studio(db, "alpha")
    for path in ("/jobs/99999999999999999999", "/shows/0", "/jobs?show_id=99999999999999999999"):
        response = api.get(path, headers=who.headers)
        assert response.status_code == 422, path
        assert response.json()["error"] == "invalid_spec"
    broken = api.post(
        "/jobs", content=b"{not json", headers={**who.headers, "Content-Type": "application/json"}
    )
    assert broken.status_code == 422
    assert broken.json()["field"] == "body"
    assert "not valid JSON" in broken.json()["message"]


def test_uploading_bytes_another_studio_has_does_not_reveal_it(
    api: TestClient, db: Database
) -> None:
    alpha, beta = make_studio(db, "alpha"), make_studio(db, "beta")
    data = b"the same plate"
    digest = hashlib.sha256(data).hexdigest()
    first = api.put(f"/blobs/{digest}", content=data, headers=alpha.headers).json()
    second = api.put(f"/blobs/{digest}", content=data, headers=beta.headers).json()
    again = api.put(f"/blobs/{digest}", content=data, headers=beta.headers).json()
    assert (first["created"], second["created"], again["created"]) == (True, True, False)


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        (lambda s: s.update(frames={"first": 1, "last": 1_000_000}), "frames", "at most 100,000"),
        (
            lambda s: (
                s.update(resolution={"width": 640, "height": 480})
                or s["layers"][1].update(tiles={"tile_width": 1, "tile_height": 1})
            ),
            "layers[1].tiles",
            "4,096 allowed",
        ),
        (lambda s: s.update(shot_id=2**70), "shot_id", "less than or equal"),
        (
            lambda s: (
                s["layers"].append(
                    {
                        "name": "render2",
                        "kind": "particle_render",
                        "depends_on": ["sim"],
                        "tiles": {"cols": 1, "rows": 1},
                    }
                )
                or s["layers"][2].update(depends_on=["render", "render2"])
            ),
            "layers[2].depends_on",
            "exactly one",
        ),
    ],
)
def test_specs_that_would_swamp_the_farm_are_refused(
    api: TestClient, db: Database, tmp_path: Path, mutate: Any, field: str, words: str
) -> None:
    assert_spec_refused(api, db, tmp_path, mutate, field, words)
    assert count_jobs(db) == 0

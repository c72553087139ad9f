"""The API as a contract others build on (issue 21): timestamps with a zone, every error status
declared with the error schema, constraints in the OpenAPI, and cursor pages over every list."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from farm import schemas
from farm.api.app import create_app
from farm.api.context import FarmContext
from farm.db import models as m
from farm.db.paging import encode_cursor
from farm.db.session import Database
from farm.states import TileState
from farm.storage import DiskStore
from farm.vocab import Role
from studio_client import Client
from tests.factories import StudioUser, job_spec, make_shot, make_studio
from tests.integration.test_api import seed_version, shot_and_show

ERROR_REF = "#/components/schemas/ErrorOut"


@pytest.fixture
def api(db: Database, tmp_path: Path) -> Iterator[TestClient]:
    context = FarmContext(db=db, store=DiskStore(tmp_path / "blobs"), output_root=tmp_path / "out")
    with TestClient(create_app(context)) as client:
        yield client


# ----------------------------------------------------------------------------- timestamps
def _timestamps(value: Any) -> list[str]:
    """Every ``*_at`` value in a JSON answer, however deep."""
    if isinstance(value, list):
        return [t for item in value for t in _timestamps(item)]
    if isinstance(value, dict):
        found = [v for k, v in value.items() if k.endswith("_at") and v is not None]
        return found + [t for v in value.values() for t in _timestamps(v)]
    return []


def test_every_timestamp_read_back_carries_utc(
    api: TestClient, db: Database, tmp_path: Path
) -> None:
    who = make_studio(db, "alpha")
    shot_id, show_id = shot_and_show(db, who)
    version_id = seed_version(api, who, show_id, tmp_path)
    submitted = api.post(
        "/jobs", json=job_spec(shot_id, version_id).model_dump(mode="json"), headers=who.headers
    )
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    with db.session() as session:  # as the dispatcher would stamp it, in another zone
        job = session.get_one(m.Job, job_id)
        job.finished_at = datetime(2026, 12, 5, 8, 0, tzinfo=timezone(timedelta(hours=1)))
    answers = [
        api.get(path, headers=who.headers).json()
        for path in (
            "/shows",
            f"/shows/{show_id}",
            f"/shows/{show_id}/shots",
            "/jobs",
            f"/jobs/{job_id}",
        )
    ]
    answers.append(submitted.json())
    stamps = _timestamps(answers)
    assert len(stamps) >= 6  # shows, shot, job summary and detail, finished_at
    assert all(s.endswith(("Z", "+00:00")) for s in stamps), stamps
    detail = answers[4]
    assert datetime.fromisoformat(detail["finished_at"]) == datetime(2026, 12, 5, 7, 0, tzinfo=UTC)


def test_rows_read_back_aware_in_utc_whatever_was_written(db: Database) -> None:
    """The dispatcher subtracts read timestamps from ``datetime.now(UTC)``: both must be aware."""
    with db.session() as session:
        studio = session.get_one(m.Studio, make_studio(db, "alpha").studio_id)
        studio.created_at = datetime(2026, 1, 1, 12, 0)  # naive: taken as UTC
    with db.session() as session:
        read = session.get_one(m.Studio, studio.id).created_at
    assert read == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert read.utcoffset() == timedelta(0)
    assert datetime.now(UTC) - read > timedelta(0)


# ----------------------------------------------------------------------------- OpenAPI
def _operations(api: TestClient) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in api.get("/openapi.json").json()["paths"].items():
        if path == "/health":  # no token, no parameters: it answers 200 or nothing
            continue
        for method, operation in methods.items():
            yield path, method, operation


def _declares(operation: dict[str, Any], status: int) -> bool:
    answer = operation["responses"].get(str(status), {})
    schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref") == ERROR_REF)


def test_every_operation_declares_401_422_and_503_with_the_error_schema(
    api: TestClient,
) -> None:
    operations = list(_operations(api))
    assert len(operations) > 20
    for path, method, operation in operations:
        for status in (401, 422, 503):
            assert _declares(operation, status), f"{method.upper()} {path}: {status}"
    assert "HTTPValidationError" not in api.get("/openapi.json").json()["components"]["schemas"]


def test_operations_on_an_id_declare_404(api: TestClient) -> None:
    with_id = [(path, method, op) for path, method, op in _operations(api) if "_id}" in path]
    assert len(with_id) > 10
    for path, method, operation in with_id:
        assert _declares(operation, 404), f"{method.upper()} {path}"


def _probe_path(path: str) -> str:
    """``path`` with every parameter filled with something that does not exist."""
    return re.sub(
        r"\{(\w+)\}",
        lambda p: "999999" if p[1].endswith("_id") else "a" * 64 if p[1] == "content_hash" else "x",
        path,
    )


def test_every_role_gets_only_declared_statuses(api: TestClient, db: Database) -> None:
    """Each operation, called by each role with a missing id and an empty body, answers only
    statuses its OpenAPI declares; routes a role may not use answer 403 and declare it."""
    users = {role: make_studio(db, f"studio-{role.value}", role) for role in Role}
    refused = set()
    for path, method, operation in _operations(api):
        body = {"json": {}} if "requestBody" in operation else {}
        for role, who in users.items():
            answer = api.request(method, _probe_path(path), headers=who.headers, **body)
            where = f"{role.value}: {method.upper()} {path} -> {answer.status_code} {answer.text}"
            assert str(answer.status_code) in operation["responses"], where
            if answer.status_code >= 400 and method != "head":
                assert schemas.ErrorOut.model_validate(answer.json()), where
            if answer.status_code == 403:
                refused.add((method, path))
                assert _declares(operation, 403), where
    assert len(refused) > 10  # the submit, control, upload and admin routes at least


def test_errors_as_documented_are_what_the_api_answers(api: TestClient, db: Database) -> None:
    who = make_studio(db, "alpha")
    answer = api.get("/jobs/12345", headers=who.headers)
    assert answer.status_code == 404
    schemas.ErrorOut.model_validate(answer.json())
    bad = api.get("/jobs", params={"limit": 0}, headers=who.headers)
    assert bad.status_code == 422
    assert schemas.ErrorOut.model_validate(bad.json()).field == "limit"


def test_a_body_that_is_not_utf8_is_a_422_naming_the_body(api: TestClient, db: Database) -> None:
    """Found by schemathesis: FastAPI answered an undeclared 400 "error parsing the body"."""
    who = make_studio(db, "alpha")
    headers = {**who.headers, "Content-Type": "application/json"}
    answer = api.post("/shows", content=b'{"name": "\xff\xfe"}', headers=headers)
    assert answer.status_code == 422, answer.text
    error = schemas.ErrorOut.model_validate(answer.json())
    assert (error.error, error.field) == ("invalid_spec", "body")
    assert "UTF-8" in error.message


def test_an_id_past_32_bits_is_a_422_not_a_database_error(api: TestClient, db: Database) -> None:
    """Found by schemathesis on PostgreSQL, whose ids are 32-bit: ``GET /jobs/2147483648``
    overflowed inside the database (500). Path ids are bounded at the edge; any other number
    the database cannot hold is a 422 saying so."""
    who = make_studio(db, "alpha")
    make_studio(db, "beta")
    path = api.get("/openapi.json").json()["paths"]["/jobs/{job_id}"]["get"]["parameters"]
    assert next(p for p in path if p["name"] == "job_id")["schema"]["maximum"] == 2**31 - 1
    assert api.get(f"/jobs/{2**31 - 1}", headers=who.headers).status_code == 404
    answer = api.get(f"/jobs/{2**31}", headers=who.headers)
    assert (answer.status_code, answer.json()["field"]) == (422, "job_id")
    share = api.post("/shares", json={"studio": "beta", "show_id": 2**31}, headers=who.headers)
    assert share.status_code == 422, share.text  # ids in bodies are bounded the same way
    assert schemas.ErrorOut.model_validate(share.json()).field == "show_id"


def test_constraints_of_the_specs_are_in_the_openapi(api: TestClient) -> None:
    components = api.get("/openapi.json").json()["components"]["schemas"]
    layer_name = components["LayerSpec"]["properties"]["name"]
    assert layer_name["pattern"] == r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
    assert layer_name["maxLength"] == 64
    tiles = components["TilingSpec"]["properties"]
    assert tiles["cols"]["anyOf"][0]["maximum"] == schemas.MAX_TILES_PER_FRAME
    assert tiles["overscan"]["maximum"] == 512
    frames = components["FrameRange"]["properties"]
    assert frames["first"]["minimum"] == 0
    assert "100,000" in components["FrameRange"]["description"]
    list_jobs = api.get("/openapi.json").json()["paths"]["/jobs"]["get"]
    limit = next(p for p in list_jobs["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["maximum"], limit["schema"]["default"]) == (1000, 100)


def test_the_job_spec_example_is_a_valid_spec(api: TestClient) -> None:
    example = api.get("/openapi.json").json()["components"]["schemas"]["JobSpec"]["examples"][0]
    assert schemas.JobSpec.model_validate(example).tile_estimate == 100 * (1 + 16 + 1)


# ----------------------------------------------------------------------------- pagination
def _add_jobs(db: Database, who: StudioUser, shot_id: int, count: int) -> list[int]:
    with db.session() as session:
        shot = session.get_one(m.Shot, shot_id)
        jobs = [
            m.Job(
                studio_id=who.studio_id,
                show_id=shot.show_id,
                shot_id=shot_id,
                name=f"job{i}",
                spec={},
                submitted_by="test",
            )
            for i in range(count)
        ]
        session.add_all(jobs)
        session.flush()
        return [j.id for j in jobs]


def _walk(api: TestClient, who: StudioUser, path: str, **params: Any) -> list[list[Any]]:
    pages: list[list[Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        answer = api.get(path, params=query, headers=who.headers)
        assert answer.status_code == 200, answer.text
        pages.append(answer.json()["items"])
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            return pages


def test_250_jobs_come_in_pages_of_100_100_50_each_once(api: TestClient, db: Database) -> None:
    alpha, beta = make_studio(db, "alpha"), make_studio(db, "beta")
    alpha_shot, beta_shot = make_shot(db, alpha), make_shot(db, beta)
    mine: list[int] = []
    for _ in range(5):  # interleaved with another studio's jobs
        mine += _add_jobs(db, alpha, alpha_shot, 50)
        _add_jobs(db, beta, beta_shot, 7)
    pages = _walk(api, alpha, "/jobs")
    assert [len(p) for p in pages] == [100, 100, 50]
    ids = [job["id"] for page in pages for job in page]
    assert ids == sorted(mine, reverse=True)  # newest first, no duplicate, no gap
    assert [len(p) for p in _walk(api, beta, "/jobs", limit=10)] == [10, 10, 10, 5]
    assert len(_walk(api, alpha, "/jobs", limit=1000)[0]) == 250


def test_the_sdk_follows_every_page(
    api: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    import studio_client.client

    who = make_studio(db, "alpha")
    shot_id = make_shot(db, who)
    ids = _add_jobs(db, who, shot_id, 25)
    monkeypatch.setattr(studio_client.client, "PAGE_SIZE", 10)
    with Client("http://testserver", who.token, transport=api._transport) as client:
        assert [j.id for j in client.jobs()] == sorted(ids, reverse=True)
        first_three = [j.id for _, j in zip(range(3), client.iter_jobs(), strict=False)]
        assert first_three == sorted(ids, reverse=True)[:3]
        assert [p.name for p in client.pools()] == ["ascend", "cpu", "h100"]


def test_shows_shots_and_pools_page_by_id_or_name(api: TestClient, db: Database) -> None:
    who = make_studio(db, "alpha")
    for name in ("sh010", "sh020", "sh030"):
        shot_id = make_shot(db, who, shot=name)
    with db.session() as session:
        show_id = session.get_one(m.Shot, shot_id).show_id
    make_shot(db, who, show="other")
    shots = _walk(api, who, f"/shows/{show_id}/shots", limit=2)
    assert [[s["name"] for s in page] for page in shots] == [["sh010", "sh020"], ["sh030"]]
    assert shots[-1][-1]["id"] == shot_id
    assert [[s["name"] for s in p] for p in _walk(api, who, "/shows", limit=1)] == [
        ["show"],
        ["other"],
    ]
    pools = _walk(api, who, "/pools", limit=2)
    assert [[p["name"] for p in page] for page in pools] == [["ascend", "cpu"], ["h100"]]


@pytest.mark.parametrize(
    "cursor",
    ["not a cursor", "bm9wZQ", encode_cursor(("cpu",)), encode_cursor((1, 2)), "W3RydWVd"],
)
def test_a_bad_cursor_is_a_422_naming_it(api: TestClient, db: Database, cursor: str) -> None:
    who = make_studio(db, "alpha")
    answer = api.get("/jobs", params={"cursor": cursor}, headers=who.headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "cursor"
    assert "next_cursor" in answer.json()["message"]


@pytest.mark.parametrize("limit", [0, 1001, -5])
def test_a_limit_out_of_range_is_a_422(api: TestClient, db: Database, limit: int) -> None:
    who = make_studio(db, "alpha")
    answer = api.get("/shows", params={"limit": limit}, headers=who.headers)
    assert answer.status_code == 422
    assert answer.json()["field"] == "limit"


# ----------------------------------------------------------------------------- a job's tiles
def _job_with_tiles(api: TestClient, db: Database, who: StudioUser, tmp_path: Path) -> int:
    """A submitted job whose render layer has planned its 3 frames in 6 tiles each (as the
    dispatcher would): frame 1 done, one tile of frame 2 failed, the rest pending."""
    shot_id, show_id = shot_and_show(db, who)
    spec = job_spec(shot_id, seed_version(api, who, show_id, tmp_path), frames=(1, 3))
    job_id = int(
        api.post("/jobs", json=spec.model_dump(mode="json"), headers=who.headers).json()["id"]
    )
    with db.session() as session:
        render = session.scalars(
            select(m.Layer).where(m.Layer.job_id == job_id, m.Layer.name == "render")
        ).one()
        for frame in session.scalars(select(m.Frame).where(m.Frame.layer_id == render.id)):
            for index in range(6):
                state = TileState.PENDING
                if frame.number == 1 or (frame.number == 2 and index == 4):
                    state = TileState.DONE if frame.number == 1 else TileState.FAILED
                session.add(
                    m.Tile(
                        frame_id=frame.id,
                        layer_id=render.id,
                        job_id=job_id,
                        index=index,
                        x0=index,
                        y0=0,
                        x1=index + 1,
                        y1=1,
                        render_rect=[index, 0, index + 1, 1],
                        state=state.value,
                    )
                )
    return job_id


def test_a_job_without_its_tiles_counts_them_per_frame(
    api: TestClient, db: Database, tmp_path: Path
) -> None:
    who = make_studio(db, "alpha")
    job_id = _job_with_tiles(api, db, who, tmp_path)
    full = api.get(f"/jobs/{job_id}", headers=who.headers).json()
    light = api.get(f"/jobs/{job_id}", params={"tiles": "false"}, headers=who.headers).json()
    assert [len(f["tiles"]) for f in full["layers"][1]["frames"]] == [6, 6, 6]
    assert all(f["tiles"] == [] for layer in light["layers"] for f in layer["frames"])
    assert [layer["tile_counts"] for layer in light["layers"]] == [
        layer["tile_counts"] for layer in full["layers"]
    ]
    counts = [f["tile_counts"] for f in light["layers"][1]["frames"]]
    assert counts == [{"done": 6}, {"pending": 5, "failed": 1}, {"pending": 6}]
    assert counts == [f["tile_counts"] for f in full["layers"][1]["frames"]]


def test_a_jobs_tiles_are_paged_and_filtered(api: TestClient, db: Database, tmp_path: Path) -> None:
    who, other = make_studio(db, "alpha"), make_studio(db, "beta")
    job_id = _job_with_tiles(api, db, who, tmp_path)
    pages = _walk(api, who, f"/jobs/{job_id}/tiles", limit=5)
    assert [len(p) for p in pages] == [5, 5, 5, 3]
    ids = [t["id"] for p in pages for t in p]
    assert ids == sorted(set(ids))
    assert [(t["frame"], t["index"]) for p in pages for t in p][:7] == [
        (1, 0),
        (1, 1),
        (1, 2),
        (1, 3),
        (1, 4),
        (1, 5),
        (2, 0),
    ]
    failed = _walk(api, who, f"/jobs/{job_id}/tiles", state="failed")
    assert [(t["layer"], t["frame"], t["index"]) for t in failed[0]] == [("render", 2, 4)]
    assert len(_walk(api, who, f"/jobs/{job_id}/tiles", layer="render", frame=3)[0]) == 6
    assert _walk(api, who, f"/jobs/{job_id}/tiles", layer="sim") == [[]]
    unknown = api.get(f"/jobs/{job_id}/tiles", params={"layer": "nope"}, headers=who.headers)
    assert (unknown.status_code, unknown.json()["field"]) == (422, "layer")
    assert "sim, render, comp" in unknown.json()["message"]
    assert api.get(f"/jobs/{job_id}/tiles", headers=other.headers).status_code == 404

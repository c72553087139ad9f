"""Farm operation through the API and the SDK: quotas, licences, rush, priority."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from farm.api.app import create_app
from farm.api.context import FarmContext
from farm.db import models as m
from farm.db.session import Database
from farm.errors import Forbidden, InvalidSpec, NotFound
from farm.storage import DiskStore
from farm.vocab import Role
from studio_client import Client
from tests.factories import StudioUser, make_shot, make_studio


@pytest.fixture
def api(db: Database, tmp_path: Path) -> Iterator[TestClient]:
    context = FarmContext(db=db, store=DiskStore(tmp_path / "blobs"), output_root=tmp_path / "out")
    with TestClient(create_app(context)) as client:
        yield client


@pytest.fixture
def operator(db: Database) -> StudioUser:
    return make_studio(db, "farmops", Role.OPERATOR)


def a_job(db: Database, who: StudioUser) -> int:
    """A stored job of ``who``'s studio (priority and rush need no tiles)."""
    shot_id = make_shot(db, who)
    with db.session() as session:
        shot = session.get_one(m.Shot, shot_id)
        job = m.Job(
            studio_id=who.studio_id,
            show_id=shot.show_id,
            shot_id=shot_id,
            name="job",
            spec={},
            submitted_by="someone",
        )
        session.add(job)
        session.flush()
        return job.id


def test_operator_sets_and_reads_quotas(
    api: TestClient, db: Database, operator: StudioUser
) -> None:
    make_studio(db, "nimble")
    body = {"guarantee": 40, "weight": 2, "ceiling": 200}
    response = api.put("/admin/quotas/nimble/h100", json=body, headers=operator.headers)
    assert response.status_code == 200, response.text
    assert response.json() | body == response.json()
    assert response.json()["studio"] == "nimble"
    again = api.put("/admin/quotas/nimble/h100", json={"guarantee": 10}, headers=operator.headers)
    assert (again.json()["guarantee"], again.json()["weight"], again.json()["ceiling"]) == (
        10,
        1.0,
        None,
    )
    listed = api.get("/admin/quotas", headers=operator.headers).json()["items"]
    assert [(q["studio"], q["pool"], q["guarantee"]) for q in listed] == [("nimble", "h100", 10)]
    assert api.delete("/admin/quotas/nimble/h100", headers=operator.headers).status_code == 204
    assert api.get("/admin/quotas", headers=operator.headers).json()["items"] == []
    gone = api.delete("/admin/quotas/nimble/h100", headers=operator.headers)
    assert gone.status_code == 404


@pytest.mark.parametrize("role", [Role.ADMIN, Role.TD, Role.PRODUCER])
def test_other_roles_are_403_with_the_error_body(api: TestClient, db: Database, role: Role) -> None:
    who = make_studio(db, "nimble", role)
    for method, path in [
        ("GET", "/admin/quotas"),
        ("PUT", "/admin/quotas/nimble/cpu"),
        ("GET", "/admin/licences"),
        ("PUT", "/admin/licences/houdini"),
        ("POST", "/admin/jobs/1/rush"),
    ]:
        response = api.request(method, path, json={}, headers=who.headers)
        assert response.status_code == 403, (method, path)
        assert response.json()["error"] == "forbidden"
        assert "operator" in response.json()["message"]


def test_unknown_studio_is_404_and_unknown_pool_422_naming_the_pools(
    api: TestClient, db: Database, operator: StudioUser
) -> None:
    make_studio(db, "nimble")
    missing = api.put("/admin/quotas/nobody/cpu", json={}, headers=operator.headers)
    assert missing.status_code == 404
    assert "nobody" in missing.json()["message"]
    bad_pool = api.put("/admin/quotas/nimble/quantum", json={}, headers=operator.headers)
    assert bad_pool.status_code == 422
    assert bad_pool.json()["field"] == "pool"
    assert "pools are ascend, cpu, h100" in bad_pool.json()["message"]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"guarantee": 50, "ceiling": 10}, "ceiling", "below the guarantee"),
        ({"weight": 0}, "weight", "greater than 0"),
        ({"guarantee": -1}, "guarantee", "greater than or equal to 0"),
        ({"share": 3}, "share", "Extra inputs"),
    ],
)
def test_bad_quotas_name_the_field(
    api: TestClient,
    db: Database,
    operator: StudioUser,
    body: dict[str, int],
    field: str,
    words: str,
) -> None:
    make_studio(db, "nimble")
    response = api.put("/admin/quotas/nimble/cpu", json=body, headers=operator.headers)
    assert response.status_code == 422
    assert response.json()["field"] == field
    assert words in response.json()["message"]


def test_operator_sets_licences_with_studio_guarantees(
    api: TestClient, db: Database, operator: StudioUser
) -> None:
    make_studio(db, "nimble")
    make_studio(db, "otter")
    body = {"count": 20, "guarantees": {"nimble": 5, "otter": 3}}
    response = api.put("/admin/licences/houdini", json=body, headers=operator.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "houdini", **body}
    api.put("/admin/licences/houdini", json={"count": 8}, headers=operator.headers)
    listed = api.get("/admin/licences", headers=operator.headers).json()["items"]
    assert listed == [{"name": "houdini", "count": 8, "guarantees": {}}]
    too_many = api.put(
        "/admin/licences/houdini",
        json={"count": 4, "guarantees": {"nimble": 5}},
        headers=operator.headers,
    )
    assert too_many.status_code == 422
    assert "more than the 4 there are" in too_many.json()["message"]
    stranger = api.put(
        "/admin/licences/houdini",
        json={"count": 4, "guarantees": {"nobody": 1}},
        headers=operator.headers,
    )
    assert (stranger.status_code, stranger.json()["field"]) == (422, "guarantees.nobody")


def test_operator_marks_any_studios_job_rush(
    api: TestClient, db: Database, operator: StudioUser
) -> None:
    who = make_studio(db, "nimble")
    job_id = a_job(db, who)
    response = api.post(f"/admin/jobs/{job_id}/rush", json={"rush": True}, headers=operator.headers)
    assert response.status_code == 200, response.text
    assert response.json()["rush"] is True
    assert api.get(f"/jobs/{job_id}", headers=who.headers).json()["rush"] is True
    off = api.post(f"/admin/jobs/{job_id}/rush", json={"rush": False}, headers=operator.headers)
    assert off.json()["rush"] is False
    assert api.post("/admin/jobs/999/rush", json={}, headers=operator.headers).status_code == 404
    with db.session() as session:
        session.get_one(m.Job, job_id).state = "done"
    ended = api.post(f"/admin/jobs/{job_id}/rush", json={"rush": True}, headers=operator.headers)
    assert ended.status_code == 409
    assert ended.json()["message"] == (
        f"job {job_id}: the job has already ended (done); nothing left to rush"
    )
    assert api.get(f"/jobs/{job_id}", headers=who.headers).json()["rush"] is False


def test_owner_changes_priority_and_another_studios_job_is_404(
    api: TestClient, db: Database
) -> None:
    who = make_studio(db, "nimble", Role.ARTIST)
    other = make_studio(db, "otter", Role.ADMIN)
    job_id = a_job(db, who)
    response = api.patch(f"/jobs/{job_id}", json={"priority": 90}, headers=who.headers)
    assert response.status_code == 200, response.text
    assert response.json()["priority"] == 90
    assert api.get(f"/jobs/{job_id}", headers=who.headers).json()["priority"] == 90
    theirs = api.patch(f"/jobs/{job_id}", json={"priority": 1}, headers=other.headers)
    assert theirs.status_code == 404
    assert theirs.json()["error"] == "not_found"
    bad = api.patch(f"/jobs/{job_id}", json={"priority": 101}, headers=who.headers)
    assert (bad.status_code, bad.json()["field"]) == (422, "priority")
    producer = make_studio(db, "money", Role.PRODUCER)
    assert api.patch(f"/jobs/{job_id}", json={}, headers=producer.headers).status_code == 403
    with db.session() as session:
        session.get_one(m.Job, job_id).state = "cancelled"
    ended = api.patch(f"/jobs/{job_id}", json={"priority": 10}, headers=who.headers)
    assert ended.status_code == 409
    assert ended.json()["message"] == (
        f"job {job_id}: the job has already ended (cancelled); nothing left to reorder"
    )


def test_the_sdk_drives_farm_operation(api: TestClient, db: Database, operator: StudioUser) -> None:
    who = make_studio(db, "nimble")
    job_id = a_job(db, who)
    with Client("http://testserver", operator.token, transport=api._transport) as ops:
        quota = ops.set_quota("nimble", "cpu", guarantee=4, weight=2.5, ceiling=8)
        assert (quota.pool, quota.guarantee, quota.weight, quota.ceiling) == ("cpu", 4, 2.5, 8)
        assert [q.studio for q in ops.quotas()] == ["nimble"]
        ops.delete_quota("nimble", "cpu")
        assert ops.quotas() == []
        with pytest.raises(NotFound):
            ops.set_quota("nobody", "cpu")
        with pytest.raises(InvalidSpec, match="pools are"):
            ops.set_quota("nimble", "quantum")
        assert ops.set_licence("nuke", 3, guarantees={"nimble": 1}).guarantees == {"nimble": 1}
        assert [lic.name for lic in ops.licences()] == ["nuke"]
        assert ops.set_rush(job_id).rush
    with Client("http://testserver", who.token, transport=api._transport) as artist:
        assert artist.set_priority(job_id, 10).priority == 10
        with pytest.raises(Forbidden):
            artist.quotas()

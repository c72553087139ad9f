"""Sharing between studios (issue 21 items 2 and 6): grants of a show or an asset, read-only
use by the grantee and its jobs, revokes, the audit log, and the publish events.

Without a live grant another studio's show, asset and version answer exactly as missing ones;
blobs stay per studio whatever is shared. Runs on PostgreSQL too where ``db`` does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from farm.api.app import create_app
from farm.api.context import FarmContext
from farm.db import models as m
from farm.db import queries, sharing
from farm.db.session import Database
from farm.errors import NotFound
from farm.storage import DiskStore
from farm.vocab import Role
from tests.factories import StudioUser, job_spec, make_shot, make_studio
from tests.integration.test_api import seed_version, shot_and_show, upload


@pytest.fixture
def api(db: Database, tmp_path: Path) -> Iterator[TestClient]:
    context = FarmContext(db=db, store=DiskStore(tmp_path / "blobs"), output_root=tmp_path / "out")
    with TestClient(create_app(context)) as client:
        yield client


def add_user(db: Database, who: StudioUser, name: str, role: Role) -> StudioUser:
    """Another user of ``who``'s studio, with ``role``."""
    with db.session() as session:
        studio = session.get_one(m.Studio, who.studio_id)
        user, token = queries.create_user(session, studio, name, role)
        return StudioUser(studio.id, user.id, token)


def share(api: TestClient, who: StudioUser, studio: str, **subject: int) -> dict[str, Any]:
    answer = api.post("/shares", json={"studio": studio, **subject}, headers=who.headers)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def submit(api: TestClient, who: StudioUser, shot_id: int, version_id: int) -> Any:
    spec = job_spec(shot_id, version_id, frames=(1, 1)).model_dump(mode="json")
    return api.post("/jobs", json=spec, headers=who.headers)


def reads(api: TestClient, who: StudioUser, show_id: int, asset_id: int, version_id: int) -> Any:
    """The status of each read of A's show, asset, versions and version, as ``who``."""
    paths = (
        f"/shows/{show_id}",
        f"/shows/{show_id}/shots",
        f"/assets/{asset_id}",
        f"/assets/{asset_id}/versions",
        f"/asset-versions/{version_id}",
    )
    return {path: api.get(path, headers=who.headers).status_code for path in paths}


@pytest.fixture
def alpha_seed(
    api: TestClient, db: Database, tmp_path: Path
) -> tuple[StudioUser, int, int, int, int]:
    """Studio alpha (a td) with a shot and a published seed: (alpha, shot, show, asset, version)."""
    alpha = make_studio(db, "alpha")
    shot_id, show_id = shot_and_show(db, alpha)
    version_id = seed_version(api, alpha, show_id, tmp_path)
    with db.session() as session:
        asset_id = session.get_one(m.AssetVersion, version_id).asset_id
    return alpha, shot_id, show_id, asset_id, version_id


def test_without_a_share_another_studios_asset_answers_as_a_missing_one(
    api: TestClient, db: Database, alpha_seed: tuple[StudioUser, int, int, int, int]
) -> None:
    alpha, _, show_id, asset_id, version_id = alpha_seed
    beta = make_studio(db, "beta")
    beta_shot = make_shot(db, beta)
    assert set(reads(api, alpha, show_id, asset_id, version_id).values()) == {200}
    assert set(reads(api, beta, show_id, asset_id, version_id).values()) == {404}
    # The same message as for an id that never existed: no existence oracle.
    theirs = api.get(f"/assets/{asset_id}", headers=beta.headers).json()
    missing = api.get("/assets/999999", headers=beta.headers).json()
    assert theirs["message"] == missing["message"].replace("999999", str(asset_id))
    assert api.get("/assets", headers=beta.headers).json() == {"items": [], "next_cursor": None}
    refused = submit(api, beta, beta_shot, version_id)
    nowhere = submit(api, beta, beta_shot, 999999)
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "layers[0].input_asset_version"
    assert refused.json()["message"] == nowhere.json()["message"].replace("999999", str(version_id))


def test_a_shared_show_is_readable_and_usable_by_the_grantee_only_until_revoked(
    api: TestClient, db: Database, alpha_seed: tuple[StudioUser, int, int, int, int]
) -> None:
    alpha, alpha_shot, show_id, asset_id, version_id = alpha_seed
    beta, gamma = make_studio(db, "beta"), make_studio(db, "gamma")
    beta_shot = make_shot(db, beta)
    granted = share(api, alpha, "beta", show_id=show_id)
    assert (granted["grantor"], granted["grantee"], granted["show"]) == ("alpha", "beta", "show")
    assert granted["asset_id"] is None and granted["granted_by"] == "alpha-user"

    assert set(reads(api, beta, show_id, asset_id, version_id).values()) == {200}
    (listed,) = api.get("/assets", headers=beta.headers).json()["items"]
    assert (listed["id"], listed["studio"], listed["shared"]) == (asset_id, "alpha", True)
    assert listed["latest"]["id"] == version_id
    own = api.get("/assets", headers=alpha.headers).json()["items"]
    assert [(a["id"], a["shared"]) for a in own] == [(asset_id, False)]
    accepted = submit(api, beta, beta_shot, version_id)
    assert accepted.status_code == 201, accepted.text

    # Read-only: no version into alpha's show, no shot, no job into alpha's shot.
    publish = api.post(
        f"/shows/{show_id}/asset-versions",
        json={"asset": "seed", "content_hash": upload(api, beta, b"beta's own bytes")},
        headers=beta.headers,
    )
    assert publish.status_code == 404, publish.text
    shot = api.post(
        f"/shows/{show_id}/shots", json={"name": "sh999", "sequence": "sq"}, headers=beta.headers
    )
    assert shot.status_code == 404
    into_theirs = submit(api, beta, alpha_shot, version_id)
    assert (into_theirs.status_code, into_theirs.json()["field"]) == (404, "shot_id")
    # Blobs stay per studio: the share does not make alpha's bytes beta's.
    with db.session() as session:
        digest = session.get_one(m.AssetVersion, version_id).content_hash
    missing = api.post("/blobs/missing", json={"hashes": [digest]}, headers=beta.headers)
    assert missing.json() == {"missing": [digest]}
    assert api.head(f"/blobs/{digest}", headers=beta.headers).status_code == 404
    # A third studio sees nothing.
    assert set(reads(api, gamma, show_id, asset_id, version_id).values()) == {404}
    assert api.get("/assets", headers=gamma.headers).json()["items"] == []
    assert api.get("/shares", headers=gamma.headers).json()["items"] == []

    revoked = api.delete(f"/shares/{granted['id']}", headers=alpha.headers)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    assert set(reads(api, beta, show_id, asset_id, version_id).values()) == {404}
    assert api.get("/assets", headers=beta.headers).json()["items"] == []
    again = submit(api, beta, beta_shot, version_id)
    assert (again.status_code, again.json()["field"]) == (422, "layers[0].input_asset_version")
    assert api.get("/shares", headers=beta.headers).json()["items"] == []


def test_an_asset_share_opens_every_version_of_that_asset_only(
    api: TestClient,
    db: Database,
    tmp_path: Path,
    alpha_seed: tuple[StudioUser, int, int, int, int],
) -> None:
    alpha, _, show_id, asset_id, version_id = alpha_seed
    beta = make_studio(db, "beta")
    other = api.post(
        f"/shows/{show_id}/asset-versions",
        json={"asset": "rig", "content_hash": upload(api, alpha, b"rig v1")},
        headers=alpha.headers,
    ).json()
    share(api, alpha, "beta", asset_id=asset_id)
    assert api.get(f"/assets/{asset_id}", headers=beta.headers).status_code == 200
    assert api.get(f"/shows/{show_id}", headers=beta.headers).status_code == 404
    assert api.get(f"/assets/{other['asset_id']}", headers=beta.headers).status_code == 404
    assert api.get(f"/asset-versions/{other['id']}", headers=beta.headers).status_code == 404
    # A version published after the grant is shared too.
    later = seed_version(api, alpha, show_id, tmp_path)
    versions = api.get(f"/assets/{asset_id}/versions", headers=beta.headers).json()["items"]
    assert [v["id"] for v in versions] == [version_id, later]
    listed = api.get("/assets", params={"show_id": show_id}, headers=beta.headers).json()
    assert [(a["id"], a["latest"]["version"]) for a in listed["items"]] == [(asset_id, 2)]


def test_only_an_admin_or_td_of_the_owner_shares_and_only_the_grantor_revokes(
    api: TestClient, db: Database, alpha_seed: tuple[StudioUser, int, int, int, int]
) -> None:
    alpha, _, show_id, asset_id, _ = alpha_seed
    beta, gamma = make_studio(db, "beta"), make_studio(db, "gamma")
    for role in (Role.ARTIST, Role.PRODUCER):
        who = add_user(db, alpha, f"alpha-{role.value}", role)
        answer = api.post(
            "/shares", json={"studio": "beta", "show_id": show_id}, headers=who.headers
        )
        assert answer.status_code == 403, role
    admin = add_user(db, alpha, "alpha-admin", Role.ADMIN)
    granted = share(api, admin, "beta", show_id=show_id)

    def post(who: StudioUser, body: dict[str, Any]) -> tuple[int, str | None, str]:
        answer = api.post("/shares", json=body, headers=who.headers)
        return answer.status_code, answer.json().get("field"), answer.json()["message"]

    assert post(alpha, {"studio": "beta", "show_id": show_id})[0] == 409
    assert post(alpha, {"studio": "nobody", "show_id": show_id}) == (
        404,
        "studio",
        "no studio named 'nobody'",
    )
    assert post(alpha, {"studio": "alpha", "show_id": show_id})[:2] == (422, "studio")
    assert post(alpha, {"studio": "beta", "show_id": show_id, "asset_id": asset_id})[:2] == (
        422,
        "show_id",
    )
    assert post(alpha, {"studio": "beta"})[:2] == (422, "show_id")
    # Beta may read alpha's show but not pass it on; gamma cannot name it at all.
    assert post(beta, {"studio": "gamma", "show_id": show_id})[0] == 403
    assert post(gamma, {"studio": "beta", "show_id": show_id})[:2] == (404, "show_id")
    assert post(gamma, {"studio": "beta", "asset_id": asset_id})[:2] == (404, "asset_id")

    assert api.delete(f"/shares/{granted['id']}", headers=beta.headers).status_code == 403
    assert api.delete(f"/shares/{granted['id']}", headers=gamma.headers).status_code == 404
    artist = add_user(db, alpha, "alpha-artist2", Role.ARTIST)
    assert api.delete(f"/shares/{granted['id']}", headers=artist.headers).status_code == 403
    assert api.delete(f"/shares/{granted['id']}", headers=alpha.headers).status_code == 200
    assert api.delete(f"/shares/{granted['id']}", headers=alpha.headers).status_code == 409


def test_every_grant_and_revoke_is_in_both_studios_audit_log(
    api: TestClient, db: Database, alpha_seed: tuple[StudioUser, int, int, int, int]
) -> None:
    alpha, _, show_id, asset_id, _ = alpha_seed
    beta, gamma = make_studio(db, "beta"), make_studio(db, "gamma")
    first = share(api, alpha, "beta", show_id=show_id)
    second = share(api, alpha, "gamma", asset_id=asset_id)
    assert api.delete(f"/shares/{first['id']}", headers=alpha.headers).status_code == 200

    def audit(who: StudioUser) -> list[tuple[Any, ...]]:
        rows = api.get("/shares/audit", headers=who.headers).json()["items"]
        return [
            (r["action"], r["share_id"], r["grantor"], r["grantee"], r["asset"], r["user_name"])
            for r in rows
        ]

    assert audit(alpha) == [  # newest first
        ("revoke", first["id"], "alpha", "beta", None, "alpha-user"),
        ("grant", second["id"], "alpha", "gamma", "seed", "alpha-user"),
        ("grant", first["id"], "alpha", "beta", None, "alpha-user"),
    ]
    assert audit(beta) == [audit(alpha)[0], audit(alpha)[2]]
    assert audit(gamma) == [audit(alpha)[1]]
    assert audit(make_studio(db, "delta")) == []
    with db.session() as session:
        rows = session.scalars(select(m.ShareAudit).order_by(m.ShareAudit.id)).all()
        share_row = session.get_one(m.Share, first["id"])
        assert rows[-1].created_at == share_row.revoked_at
        assert rows[0].created_at == share_row.created_at


def test_shares_and_the_audit_log_come_in_pages(
    api: TestClient, db: Database, alpha_seed: tuple[StudioUser, int, int, int, int]
) -> None:
    alpha, _, show_id, _, _ = alpha_seed
    ids = []
    for name in ("beta", "gamma", "delta"):
        make_studio(db, name)
        ids.append(share(api, alpha, name, show_id=show_id)["id"])
    first = api.get("/shares", params={"limit": 2}, headers=alpha.headers).json()
    rest = api.get(
        "/shares", params={"limit": 2, "cursor": first["next_cursor"]}, headers=alpha.headers
    ).json()
    assert [s["id"] for s in first["items"] + rest["items"]] == ids
    assert rest["next_cursor"] is None
    audit = api.get("/shares/audit", params={"limit": 2}, headers=alpha.headers).json()
    assert [r["share_id"] for r in audit["items"]] == ids[:0:-1]
    assert audit["next_cursor"] is not None


def test_every_publish_appends_an_asset_published_event(
    api: TestClient,
    db: Database,
    tmp_path: Path,
    alpha_seed: tuple[StudioUser, int, int, int, int],
) -> None:
    alpha, _, show_id, asset_id, first = alpha_seed
    second = seed_version(api, alpha, show_id, tmp_path)
    beta = make_studio(db, "beta")
    with db.session() as session:
        events = session.scalars(
            select(m.Event).where(m.Event.kind == "asset_published").order_by(m.Event.id)
        ).all()
        assert [(e.studio_id, e.job_id) for e in events] == [(alpha.studio_id, None)] * 2
        assert [e.payload for e in events] == [
            {
                "asset_id": asset_id,
                "asset": "seed",
                "version": number,
                "version_id": version_id,
                "show_id": show_id,
            }
            for number, version_id in ((1, first), (2, second))
        ]
        latest = sharing.latest_published(session, alpha.studio_id, asset_id)
        assert latest is not None and (latest.id, latest.version) == (second, 2)
        with pytest.raises(NotFound):
            sharing.latest_published(session, beta.studio_id, asset_id)
    share(api, alpha, "beta", asset_id=asset_id)
    with db.session() as session:
        latest = sharing.latest_published(session, beta.studio_id, asset_id)
        assert latest is not None and latest.version == 2


def test_a_refused_publish_appends_no_event(api: TestClient, db: Database) -> None:
    alpha = make_studio(db, "alpha")
    _, show_id = shot_and_show(db, alpha)
    never_sent = hashlib.sha256(b"never sent").hexdigest()
    answer = api.post(
        f"/shows/{show_id}/asset-versions",
        json={"asset": "rig", "content_hash": never_sent},
        headers=alpha.headers,
    )
    assert answer.status_code == 422
    with db.session() as session:
        assert session.scalars(select(m.Event).where(m.Event.kind == "asset_published")).all() == []


def test_farm_assets_and_farm_share_drive_the_same_routes(
    api: TestClient,
    db: Database,
    alpha_seed: tuple[StudioUser, int, int, int, int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from studio_client.cli import main
    from studio_client.cli._common import console
    from studio_client.client import Client

    alpha, _, _, asset_id, _ = alpha_seed
    beta = make_studio(db, "beta")
    caller = {"token": alpha.token}

    def make_client(url: str | None, token: str | None) -> Client:
        return Client("http://testserver", caller["token"], transport=api._transport)

    monkeypatch.setattr("studio_client.cli.assets.make_client", make_client)
    monkeypatch.setattr(console, "width", 200)  # one table row per asset, never wrapped
    assert main(["share", "beta", "--show", "show"]) == 0
    assert "beta may now read show show" in capsys.readouterr().out
    assert main(["share", "beta", "--show", "show"]) == 4
    assert capsys.readouterr().err.startswith("error: already shared with 'beta'")
    assert main(["share", "nobody", "--asset", str(asset_id)]) == 3
    assert capsys.readouterr().err.strip() == "error: no studio named 'nobody'"
    for argv in (["share"], ["share", "beta"], ["share", "--list", "--audit"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: share: "), argv

    caller["token"] = beta.token
    assert main(["assets"]) == 0
    listing = capsys.readouterr().out
    assert "seed" in listing and "v1" in listing and "shared by alpha" in listing
    assert main(["share", "--list"]) == 0
    assert "alpha" in capsys.readouterr().out
    share_id = api.get("/shares", headers=beta.headers).json()["items"][0]["id"]
    assert main(["share", "--revoke", str(share_id)]) == 3  # only the grantor revokes
    assert "only they may revoke it" in capsys.readouterr().err

    caller["token"] = alpha.token
    assert main(["share", "--revoke", str(share_id)]) == 0
    assert f"revoked share {share_id}" in capsys.readouterr().out
    assert main(["share", "--audit"]) == 0
    audit = capsys.readouterr().out
    assert "revoke" in audit and "grant" in audit
    caller["token"] = beta.token
    assert main(["assets"]) == 0
    assert capsys.readouterr().out.strip() == "no assets"


@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
def test_a_grantees_job_runs_on_a_shared_seed_through_the_dispatcher(
    api: TestClient, db: Database, tmp_path: Path
) -> None:
    """The grantee's tasks read the seed by hash from the store: no blob grant is needed."""
    from scheduler.dispatch.dispatcher import Dispatcher

    if db.engine.dialect.name != "sqlite":
        pytest.skip("one database is enough for the dispatcher; the API tests run on both")
    alpha, beta = make_studio(db, "alpha"), make_studio(db, "beta")
    _, show_id = shot_and_show(db, alpha)
    version_id = seed_version(api, alpha, show_id, tmp_path)
    share(api, alpha, "beta", show_id=show_id)
    accepted = submit(api, beta, make_shot(db, beta), version_id)
    assert accepted.status_code == 201, accepted.text
    job_id = accepted.json()["id"]
    store = DiskStore(tmp_path / "blobs")
    Dispatcher(db, store, tmp_path / "out").run_until_done([job_id], 120)
    assert api.get(f"/jobs/{job_id}", headers=beta.headers).json()["state"] == "done"
    with db.session() as session:
        digest = session.get_one(m.AssetVersion, version_id).content_hash
        assert not queries.studio_has_blob(session, beta.studio_id, digest)

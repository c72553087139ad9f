"""API tokens end to end: stored hashed, listed, revoked, rotated; ``farm login`` and its file."""

from __future__ import annotations

import io
import socket
import stat
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import event, select, text, update

from farm.api.app import create_app
from farm.api.context import FarmContext
from farm.db import models as m
from farm.db import queries, tokens
from farm.db.session import Database, alembic_config
from farm.storage import DiskStore
from farm.vocab import Role
from studio_client.cli import main
from tests.factories import StudioUser, make_studio


@pytest.fixture
def api(db: Database, tmp_path: Path) -> Iterator[TestClient]:
    context = FarmContext(db=db, store=DiskStore(tmp_path / "blobs"), output_root=tmp_path / "out")
    with TestClient(create_app(context)) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def colleague(db: Database, who: StudioUser, name: str, role: Role) -> StudioUser:
    """Another user in ``who``'s studio."""
    with db.session() as session:
        user, token = queries.create_user(
            session, session.get_one(m.Studio, who.studio_id), name, role
        )
        return StudioUser(who.studio_id, user.id, token)


def listing(api: TestClient, token: str) -> list[dict[str, Any]]:
    """Every token the caller may see, page after page (two a page, to walk the cursor)."""
    rows: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        response = api.get("/tokens", params=params, headers=bearer(token))
        assert response.status_code == 200, response.text
        rows += response.json()["items"]
        if response.json()["next_cursor"] is None:
            return rows
        params["cursor"] = response.json()["next_cursor"]


def create(api: TestClient, who: StudioUser, name: str = "laptop", **extra: Any) -> dict[str, Any]:
    response = api.post("/tokens", json={"name": name, **extra}, headers=who.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# ----------------------------------------------------------------------------- stored hashed
def test_the_database_never_holds_a_secret(db: Database, api: TestClient, tmp_path: Path) -> None:
    who = make_studio(db, "nimble")
    secrets = [who.token, create(api, who)["token"]]
    with db.session() as session:
        values = [
            str(value)
            for table in (m.ApiToken.__table__, m.User.__table__)
            for row in session.execute(select(table))
            for value in row
        ]
        hashes = session.scalars(select(m.ApiToken.token_hash)).all()
    for secret in secrets:
        assert tokens.hash_token(secret) in hashes
        assert not any(secret[6:36] in value for value in values)  # not even the random part
    for path in tmp_path.glob("farm.db*"):  # SQLite's file and its write-ahead log
        data = path.read_bytes()
        assert not any(secret[6:36].encode() in data for secret in secrets)


def test_a_listing_shows_the_prefix_and_never_the_secret(db: Database, api: TestClient) -> None:
    who = make_studio(db, "nimble")
    made = create(api, who, "ci", expires_in_days=30)
    assert made["token"].startswith("delta_") and tokens.is_well_formed(made["token"])
    response = api.get("/tokens", headers=who.headers)
    assert response.status_code == 200
    assert made["token"] not in response.text and who.token not in response.text
    rows = {row["name"]: row for row in response.json()["items"]}
    assert set(rows) == {"initial", "ci"}
    assert "token" not in rows["ci"]
    assert rows["ci"]["prefix"] == made["token"][:10]
    assert rows["initial"]["prefix"] == who.token[:10]
    assert rows["ci"]["expires_at"] is not None and rows["ci"]["revoked_at"] is None
    assert rows["ci"]["user_name"] == "nimble-user"


@pytest.mark.parametrize(
    ("body", "field"),
    [({"name": "../x"}, "name"), ({"name": "ci", "expires_in_days": 0}, "expires_in_days")],
)
def test_a_bad_token_request_is_422_naming_the_field(
    db: Database, api: TestClient, body: dict[str, Any], field: str
) -> None:
    who = make_studio(db, "nimble")
    response = api.post("/tokens", json=body, headers=who.headers)
    assert response.status_code == 422
    assert response.json()["field"] == field
    assert [row["name"] for row in listing(api, who.token)] == ["initial"]


def test_too_many_live_tokens_is_409(
    db: Database, api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "MAX_LIVE_TOKENS", 2)
    who = make_studio(db, "nimble")
    spare = create(api, who)
    response = api.post("/tokens", json={"name": "one-more"}, headers=who.headers)
    assert response.status_code == 409 and "revoke" in response.json()["message"]
    assert api.delete(f"/tokens/{spare['id']}", headers=who.headers).status_code == 200
    create(api, who, "one-more")


# ----------------------------------------------------------------------------- refused tokens
def test_a_malformed_token_is_refused_before_any_lookup(db: Database, api: TestClient) -> None:
    who = make_studio(db, "nimble")
    flipped = who.token[:-1] + ("A" if who.token[-1] != "A" else "B")
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        for bad in (flipped, "not-a-token", "delta_" + "a" * 36):
            response = api.get("/me", headers=bearer(bad))
            assert response.status_code == 401
            body = response.json()
            assert body["error"] == "unauthenticated"
            assert "malformed" in body["message"] and "checksum" not in body["message"]
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert not [s for s in statements if "api_tokens" in s]


def test_a_well_formed_unknown_token_is_401_unknown(db: Database, api: TestClient) -> None:
    make_studio(db, "nimble")
    response = api.get("/me", headers=bearer(tokens.new_token()))
    assert response.status_code == 401
    assert response.json()["message"].startswith("unknown API token")
    assert "malformed" not in response.json()["message"]


def test_an_expired_token_is_401_expired(db: Database, api: TestClient) -> None:
    who = make_studio(db, "nimble")
    made = create(api, who, "short", expires_in_days=1)
    assert api.get("/me", headers=bearer(made["token"])).status_code == 200
    with db.session() as session:
        past = datetime.now(UTC) - timedelta(seconds=1)
        session.execute(
            update(m.ApiToken).where(m.ApiToken.id == made["id"]).values(expires_at=past)
        )
    response = api.get("/me", headers=bearer(made["token"]))
    assert response.status_code == 401
    assert response.json()["message"].startswith("token expired")


# ----------------------------------------------------------------------------- revoke and rotate
def test_a_revoked_token_is_401_at_once(db: Database, api: TestClient) -> None:
    who = make_studio(db, "nimble")
    laptop = create(api, who)
    assert api.get("/me", headers=bearer(laptop["token"])).json()["name"] == "nimble-user"
    response = api.delete(f"/tokens/{laptop['id']}", headers=who.headers)
    assert response.status_code == 200 and response.json()["revoked_at"] is not None
    refused = api.get("/me", headers=bearer(laptop["token"]))
    assert refused.status_code == 401
    assert refused.json()["message"].startswith("token revoked")
    again = api.delete(f"/tokens/{laptop['id']}", headers=who.headers)
    assert again.json()["revoked_at"] == response.json()["revoked_at"]  # idempotent
    assert api.get("/me", headers=who.headers).status_code == 200  # the other token lives on


def test_rotating_issues_a_new_secret_and_revokes_the_old(db: Database, api: TestClient) -> None:
    who = make_studio(db, "nimble")
    old = create(api, who, "ci", expires_in_days=10)
    response = api.post(f"/tokens/{old['id']}/rotate", headers=bearer(old["token"]))
    assert response.status_code == 201
    new = response.json()
    assert new["id"] != old["id"] and new["name"] == "ci" and new["token"] != old["token"]
    assert tokens.is_well_formed(new["token"])
    lifetime = datetime.fromisoformat(new["expires_at"]) - datetime.fromisoformat(new["created_at"])
    assert abs(lifetime - timedelta(days=10)) < timedelta(minutes=1)
    assert api.get("/me", headers=bearer(old["token"])).status_code == 401
    assert api.get("/me", headers=bearer(new["token"])).status_code == 200
    twice = api.post(f"/tokens/{old['id']}/rotate", headers=bearer(new["token"]))
    assert twice.status_code == 409


def test_another_studios_token_id_is_404(db: Database, api: TestClient) -> None:
    alpha = make_studio(db, "alpha")
    beta = make_studio(db, "beta", Role.ADMIN)  # even an admin of another studio
    target = create(api, alpha)
    missing = api.delete("/tokens/999999", headers=beta.headers)
    for method, path in (("DELETE", ""), ("POST", "/rotate")):
        response = api.request(method, f"/tokens/{target['id']}{path}", headers=beta.headers)
        assert response.status_code == 404
        assert response.json()["message"] == missing.json()["message"].replace(
            "999999", str(target["id"])
        )
    assert target["id"] not in [t["id"] for t in listing(api, beta.token)]
    assert api.get("/me", headers=bearer(target["token"])).status_code == 200


def test_a_studio_admin_lists_and_revokes_but_never_rotates_others_tokens(
    db: Database, api: TestClient
) -> None:
    artist = make_studio(db, "nimble", Role.ARTIST)
    admin = colleague(db, artist, "boss", Role.ADMIN)
    peer = colleague(db, artist, "peer", Role.ARTIST)
    make_studio(db, "other")
    laptop = create(api, artist)

    studio_ids = {t["id"] for t in listing(api, admin.token)}
    own_ids = {t["id"] for t in listing(api, artist.token)}
    assert own_ids < studio_ids and len(studio_ids) == 4  # 3 users' first tokens and the laptop's
    assert api.delete(f"/tokens/{laptop['id']}", headers=peer.headers).status_code == 404

    rotate = api.post(f"/tokens/{laptop['id']}/rotate", headers=admin.headers)
    assert rotate.status_code == 403 and rotate.json()["error"] == "forbidden"
    assert api.delete(f"/tokens/{laptop['id']}", headers=admin.headers).status_code == 200
    assert api.get("/me", headers=bearer(laptop["token"])).status_code == 401


def test_last_used_is_written_at_most_once_a_minute(db: Database, api: TestClient) -> None:
    who = make_studio(db, "nimble")

    def last_used() -> datetime | None:
        with db.session() as session:
            return session.scalars(select(m.ApiToken.last_used_at)).one()

    assert last_used() is None
    api.get("/me", headers=who.headers)
    first = last_used()
    assert first is not None
    api.get("/me", headers=who.headers)
    assert last_used() == first
    with db.session() as session:
        session.execute(update(m.ApiToken).values(last_used_at=first - timedelta(minutes=2)))
    api.get("/me", headers=who.headers)
    latest = last_used()
    assert latest is not None and latest >= first


def test_the_token_routes_declare_their_errors_with_the_error_schema(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    wanted = {
        ("/tokens", "get"): {"401", "422"},
        ("/tokens", "post"): {"401", "409", "422"},
        ("/tokens/{token_id}", "delete"): {"401", "404", "422"},
        ("/tokens/{token_id}/rotate", "post"): {"401", "403", "404", "409", "422"},
    }
    for (path, method), statuses in wanted.items():
        responses = paths[path][method]["responses"]
        assert statuses <= set(responses), (path, method)
        for status in statuses:
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema["$ref"].endswith("/ErrorOut")


# ----------------------------------------------------------------------------- before 0008
def test_a_token_issued_before_revision_0008_keeps_working(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    legacy = "A" * 20 + "b-c_d" + "9" * 18  # secrets.token_urlsafe(32) had 43 such characters
    database = Database(url)
    config = alembic_config(url)
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0007")
        connection.execute(
            text("INSERT INTO studios (name, created_at) VALUES ('old', '2026-01-01')")
        )
        connection.execute(
            text(
                "INSERT INTO users (studio_id, name, role, token_hash, created_at) "
                "VALUES (1, 'ana', 'td', :hash, '2026-01-01')"
            ),
            {"hash": tokens.hash_token(legacy)},
        )
    database.migrate()
    context = FarmContext(
        db=database, store=DiskStore(tmp_path / "blobs"), output_root=tmp_path / "out"
    )
    with TestClient(create_app(context)) as api:
        assert api.get("/me", headers=bearer(legacy)).json()["name"] == "ana"
        (row,) = listing(api, legacy)
        assert (row["name"], row["prefix"]) == ("legacy", None)
        new = api.post(f"/tokens/{row['id']}/rotate", headers=bearer(legacy)).json()
        assert tokens.is_well_formed(new["token"])
        assert api.get("/me", headers=bearer(legacy)).status_code == 401
    database.dispose()


# ----------------------------------------------------------------------------- farm login
@pytest.fixture
def served(db: Database, tmp_path: Path) -> Iterator[str]:
    """The API on a free loopback port (no dispatcher), for CLI commands that dial a URL."""
    context = FarmContext(db=db, store=DiskStore(tmp_path / "blobs"), output_root=tmp_path / "out")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(context), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


def test_login_writes_a_private_file_that_the_cli_then_uses(
    db: Database, served: str, config_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    who = make_studio(db, "nimble")
    assert main(["login", "--url", served, "--token", who.token]) == 0
    assert "as nimble-user (td)" in capsys.readouterr().out
    path = config_home / "delta" / "credentials.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["credentials.toml"]  # no temp file left
    assert tomllib.loads(path.read_text()) == {"url": served, "token": who.token}

    # No --url, --token, FARM_API_URL or FARM_TOKEN: the file supplies both.
    assert main(["tokens", "create", "ci"]) == 0
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    assert tokens.is_well_formed(secret)
    assert main(["tokens", "list"]) == 0
    listing = capsys.readouterr().out
    assert "initial" in listing and "ci" in listing and secret[:10] in listing
    assert secret not in listing and who.token not in listing

    assert main(["logout"]) == 0
    assert not path.exists()
    assert main(["tokens", "list"]) == 3
    assert "farm login" in capsys.readouterr().err


def test_flags_and_environment_come_before_the_stored_token(
    db: Database,
    served: str,
    config_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    who = make_studio(db, "nimble")
    assert main(["login", "--url", served, "--token", who.token]) == 0
    monkeypatch.setenv("FARM_TOKEN", tokens.new_token())
    assert main(["tokens", "list"]) == 3
    assert capsys.readouterr().err.startswith("error: unknown API token")
    assert main(["tokens", "list", "--token", who.token]) == 0


def test_login_with_a_bad_token_stores_nothing(
    db: Database, served: str, config_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_studio(db, "nimble")
    assert main(["login", "--url", served, "--token", "delta_nope"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "malformed" in err[0]
    assert not (config_home / "delta" / "credentials.toml").exists()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_login_asks_for_the_token_on_a_terminal_only(
    db: Database,
    served: str,
    config_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    who = make_studio(db, "nimble")
    monkeypatch.setenv("FARM_API_URL", served)
    monkeypatch.setattr(sys, "stdin", io.StringIO(who.token))  # piped: never read as the token
    assert main(["login"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: no token to log in with: pass --token (no terminal to ask on)"]

    asked: list[str] = []

    def fake_getpass(prompt: str) -> str:  # getpass reads the terminal without echo
        asked.append(prompt)
        return who.token + "\n"

    monkeypatch.setattr(sys, "stdin", _Terminal())
    monkeypatch.setattr("getpass.getpass", fake_getpass)
    assert main(["login"]) == 0
    assert asked == ["API token: "]
    stored = tomllib.loads((config_home / "delta" / "credentials.toml").read_text())
    assert stored == {"url": served, "token": who.token}


def test_cli_rotate_then_log_in_again_and_revoke(
    db: Database, served: str, config_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    who = make_studio(db, "nimble")
    assert main(["login", "--url", served, "--token", who.token]) == 0
    assert main(["tokens", "create", "laptop", "--expires-in-days", "7"]) == 0
    assert "expires" in capsys.readouterr().out
    with db.session() as session:
        laptop_id = session.scalars(select(m.ApiToken.id).where(m.ApiToken.name == "laptop")).one()
    assert main(["tokens", "rotate", str(laptop_id)]) == 0
    successor = capsys.readouterr().out.strip().splitlines()[-1]
    assert tokens.is_well_formed(successor)

    assert main(["login", "--token", successor]) == 0  # the stored URL is kept
    stored = tomllib.loads((config_home / "delta" / "credentials.toml").read_text())
    assert stored == {"url": served, "token": successor}
    assert main(["tokens", "revoke", str(laptop_id + 1)]) == 0  # the very token in use
    assert f"revoked token {laptop_id + 1} (laptop" in capsys.readouterr().out
    assert main(["tokens", "list"]) == 3
    assert capsys.readouterr().err.startswith("error: token revoked")

    assert main(["tokens", "list", "--token", who.token]) == 0
    assert capsys.readouterr().out.count("revoked") == 2
    assert main(["tokens", "revoke", "999999", "--token", who.token]) == 3
    assert capsys.readouterr().err.startswith("error: token 999999 not found")

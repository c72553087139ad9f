"""``farm admin``: studios and users straight in the farm's database under FARM_HOME."""

from __future__ import annotations

import pytest

from farm.api.context import FarmContext
from farm.db import tokens
from farm.settings import Settings
from studio_client.cli import main


def test_create_studio_prints_a_token_that_authenticates(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["admin", "create-studio", "nimble", "--user", "ana", "--role", "td"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    context = FarmContext.from_settings(Settings())
    with context.db.session() as session:
        user = tokens.user_for_token(session, token)
        assert (user.name, user.role, user.studio.name) == ("ana", "td", "nimble")
    assert main(["admin", "create-user", "nimble", "bo", "--role", "producer"]) == 0
    assert len(capsys.readouterr().out.strip()) > 30


def test_bad_role_and_duplicate_studio_are_one_line_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["admin", "create-studio", "nimble", "--role", "boss"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: role 'boss' is not one of artist, td, producer, admin, operator"]
    assert main(["admin", "create-studio", "nimble"]) == 0
    capsys.readouterr()
    assert main(["admin", "create-studio", "nimble"]) == 4
    assert "already exists" in capsys.readouterr().err
    assert main(["admin", "create-user", "nobody-studio", "x"]) == 3
    capsys.readouterr()
    # A user name taken in the studio: one line that says so, not the database's error.
    assert main(["admin", "create-user", "nimble", "ana"]) == 0
    capsys.readouterr()
    assert main(["admin", "create-user", "nimble", "ana"]) == 4
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: user 'ana' already exists in studio 'nimble'"
    ]
    assert main(["admin", "create-user", "nimble", "bo"]) == 0  # the farm goes on


def test_a_studio_name_that_is_not_a_plain_name_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Studio names become output folders: no path tricks."""
    assert main(["admin", "create-studio", "../../etc"]) == 2
    assert "studio name" in capsys.readouterr().err


def test_a_port_out_of_range_or_taken_is_one_line_before_anything_starts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from scheduler.embedded import EmbeddedFarm

    def start(self: EmbeddedFarm, **_: object) -> EmbeddedFarm:
        raise AssertionError("the farm started (Ray, the dispatcher) for a port it cannot use")

    monkeypatch.setattr(EmbeddedFarm, "start", start)
    assert main(["server", "--port", "99999"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--port" in err[0] and "65535" in err[0]
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["server", "--port", str(port)]) == 5
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: cannot listen on 127.0.0.1:{port} (Address already in use): another program "
        "holds the port, or the address is not this machine's; pick another --port or --host"
    ]

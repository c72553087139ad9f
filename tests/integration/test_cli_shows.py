"""``farm show`` and ``farm shot``: a newcomer makes the show and shot a job runs in."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from studio_client.cli import main
from studio_client.cli import shows as shows_cli
from tests.factories import StudioUser, make_studio
from tests.integration.test_fetch import api, client_for, store, who

__all__ = ["api", "store", "who"]  # fixtures


def test_a_show_and_a_shot_made_on_the_command_line_take_a_job(
    api: TestClient,
    who: StudioUser,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(shows_cli, "make_client", lambda url, token: client_for(api, who))
    assert main(["show", "list"]) == 0
    assert "no shows yet" in capsys.readouterr().out
    assert main(["show", "create", "seamonster", "--title", "The Sea Monster"]) == 0
    assert capsys.readouterr().out.startswith("show seamonster created (id ")
    assert main(["shot", "list", "seamonster"]) == 0
    assert "has no shots yet" in capsys.readouterr().out
    assert main(["shot", "create", "seamonster", "sq010/sh0100"]) == 0
    said = capsys.readouterr().out
    assert "shot sq010/sh0100 created in seamonster" in said
    assert "--show seamonster --shot sq010/sh0100" in said
    assert main(["shot", "list", "seamonster"]) == 0
    assert "sq010/sh0100" in capsys.readouterr().out
    assert main(["show", "list"]) == 0
    assert "The Sea Monster" in capsys.readouterr().out
    # The names the job commands resolve are the ones just made.
    client = client_for(api, who)
    shot = client.shots(client.show("seamonster").id)[0]
    assert (shot.sequence, shot.name) == ("sq010", "sh0100")


def test_bad_or_missing_names_are_one_line_each(
    api: TestClient,
    who: StudioUser,
    db: object,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(shows_cli, "make_client", lambda url, token: client_for(api, who))
    assert main(["show", "create", "seamonster"]) == 0
    capsys.readouterr()
    assert main(["shot", "create", "seamonster", "sh0100"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: shot 'sh0100' is not SEQUENCE/SHOT: name its sequence too, e.g. sq010/sh0100"
    ]
    assert main(["shot", "create", "nowhere", "sq010/sh0100"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere" in err[0]
    assert main(["show", "create", "seamonster"]) == 4  # taken
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["show", "create", "../etc"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    # Another studio's show is not there for this one.
    rival = make_studio(db, "rival")  # type: ignore[arg-type]
    monkeypatch.setattr(shows_cli, "make_client", lambda url, token: client_for(api, rival))
    assert main(["shot", "list", "seamonster"]) == 2
    assert capsys.readouterr().err.strip() == "error: no show named 'seamonster' in your studio"

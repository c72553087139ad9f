"""``farm admin quota|licence|rush`` straight in the farm's database under FARM_HOME."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from farm.api.context import FarmContext
from farm.db import models as m
from farm.settings import Settings
from studio_client.cli import main


def context() -> FarmContext:
    return FarmContext.from_settings(Settings())


def test_quota_set_list_and_delete(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "create-studio", "nimble"]) == 0
    argv = ["admin", "quota", "set", "nimble", "h100", "--guarantee", "40", "--weight", "2"]
    assert main([*argv, "--ceiling", "200"]) == 0
    assert "guarantee 40, weight 2, ceiling 200" in capsys.readouterr().out
    with context().db.session() as session:
        quota = session.scalars(select(m.Quota)).one()
        assert (quota.pool, quota.guarantee, quota.weight, quota.ceiling) == ("h100", 40, 2, 200)
    assert main(["admin", "quota", "list"]) == 0
    listing = capsys.readouterr().out
    assert "nimble" in listing and "h100" in listing and "200" in listing
    assert main(["admin", "quota", "delete", "nimble", "h100"]) == 0
    with context().db.session() as session:
        assert session.scalars(select(m.Quota)).all() == []


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["nimble", "quantum"], 2, "unknown pool 'quantum'; pools are ascend, cpu, h100"),
        (["nobody", "cpu"], 3, "no studio named 'nobody'"),
        (["nimble", "cpu", "--guarantee", "50", "--ceiling", "10"], 2, "below the guarantee"),
        (["nimble", "cpu", "--weight", "0"], 2, "weight"),
        (["nimble", "cpu", "--weight", "nan"], 2, "weight: Input should be a finite number"),
    ],
)
def test_bad_quotas_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], code: int, words: str
) -> None:
    assert main(["admin", "create-studio", "nimble"]) == 0
    capsys.readouterr()
    assert main(["admin", "quota", "set", *argv]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert words in err[0]


def test_licence_set_and_list_with_guarantees(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "create-studio", "nimble"]) == 0
    argv = ["admin", "licence", "set", "houdini", "20", "--guarantee", "nimble=5"]
    assert main(argv) == 0
    assert "houdini: 20 seats (nimble=5)" in capsys.readouterr().out
    assert main(["admin", "licence", "list"]) == 0
    assert "nimble=5" in capsys.readouterr().out
    assert main(["admin", "licence", "set", "houdini", "20", "--guarantee", "nimble"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --guarantee 'nimble': write STUDIO=N, e.g. --guarantee nimble=5"
    )
    assert main(["admin", "licence", "set", "houdini", "2", "--guarantee", "nimble=5"]) == 2
    assert "more than the 2 there are" in capsys.readouterr().err
    # A negative count is a value out of range, not an unknown option "-1".
    assert main(["admin", "licence", "set", "houdini", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "count" in err[0] and "greater than or equal to 0" in err[0]


def test_a_ceiling_of_zero_says_what_it_means(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "create-studio", "nimble"]) == 0
    capsys.readouterr()
    assert main(["admin", "quota", "set", "nimble", "h100", "--ceiling", "0"]) == 0
    assert " ".join(capsys.readouterr().out.split()) == (  # rich wraps at 80 columns here
        "quota of nimble on h100: guarantee 0, weight 1, "
        "ceiling 0 (the studio gets none of this pool)"
    )


def test_rush_on_and_off(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "create-studio", "nimble"]) == 0
    with context().db.session() as session:
        studio = session.scalars(select(m.Studio)).one()
        show = m.Show(studio_id=studio.id, name="show")
        session.add(show)
        session.flush()
        sequence = m.Sequence(show_id=show.id, name="sq")
        session.add(sequence)
        session.flush()
        shot = m.Shot(show_id=show.id, sequence_id=sequence.id, name="sh")
        session.add(shot)
        session.flush()
        job = m.Job(
            studio_id=studio.id,
            show_id=show.id,
            shot_id=shot.id,
            name="j",
            spec={},
            submitted_by="x",
        )
        session.add(job)
        session.flush()
        job_id = job.id
    assert main(["admin", "rush", str(job_id)]) == 0
    with context().db.session() as session:
        assert session.get_one(m.Job, job_id).rush
    assert main(["admin", "rush", str(job_id), "--off"]) == 0
    with context().db.session() as session:
        assert not session.get_one(m.Job, job_id).rush
    capsys.readouterr()
    assert main(["admin", "rush", "999"]) == 3
    assert capsys.readouterr().err.strip() == "error: job 999 not found"

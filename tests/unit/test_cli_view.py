"""What a job looks like in the terminal: the live tile grid."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rich.console import Console

from farm import schemas
from farm.vocab import PixelRect
from studio_client.cli._view import job_view, tile_grid


def tile(i: int, x: int, y: int, state: str, reason: str = "") -> schemas.TileOut:
    return schemas.TileOut(
        index=i,
        rect=PixelRect(x0=x, y0=y, x1=x + 10, y1=y + 10),
        state=state,
        attempts=1,
        reason=reason,
        pool="cpu",
        node="n",
        wall_seconds=1.0,
        cpu_seconds=1.0,
    )


def test_tile_grid_shows_each_frames_tiles_in_place_and_its_plan() -> None:
    frame = schemas.FrameOut(
        number=1001,
        state="running",
        tile_plan="4 tiles (2x2 grid), overscan 8 px",
        tiles=[
            tile(0, 0, 0, "done"),
            tile(1, 10, 0, "running"),
            tile(2, 0, 10, "pending"),
            tile(3, 10, 10, "failed"),
        ],
    )
    layer = schemas.LayerOut(
        id=1,
        name="render",
        kind="particle_render",
        pool="h100",
        depends_on=[],
        state="running",
        tile_counts={},
        frames=[frame],
    )
    console = Console(width=100, record=True)
    console.print(tile_grid(layer))
    lines = console.export_text().splitlines()
    assert lines[0].startswith(" 1001 ■■  running  4 tiles (2x2 grid)")
    assert lines[1].strip() == "■■"


def test_status_says_under_the_layer_table_why_each_layer_with_pending_tiles_waits() -> None:
    def layer(name: str, *tiles: schemas.TileOut) -> schemas.LayerOut:
        frame = schemas.FrameOut(
            number=1,
            state="pending",
            tile_plan=None,
            tiles=list(tiles),
        )
        return schemas.LayerOut(
            id=len(name),
            name=name,
            kind="noop",
            pool="cpu",
            depends_on=[],
            state="pending",
            tile_counts={},
            frames=[frame],
        )

    licence = "licence houdini: 1 of 1 in use"
    job = schemas.JobOut(
        id=7,
        name="job",
        shot_id=1,
        state="running",
        submitted_by="someone",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        finished_at=None,
        # sim's reason is current; done's entry is stale: none of its tiles waits any more.
        message=f"sim: {licence}; done: studio x is over its share of pool cpu",
        layers=[
            layer("sim", tile(0, 0, 0, "running"), tile(1, 10, 0, "pending", "ready")),
            layer("render", tile(0, 0, 0, "pending", "preempted for rush job 3")),
            layer("done", tile(0, 0, 0, "done")),
            layer("fresh", tile(0, 0, 0, "pending", "ready")),
        ],
    )
    console = Console(width=200, record=True)
    console.print(job_view(job))
    lines = console.export_text().splitlines()
    waiting = [line for line in lines if " waiting because " in line]
    assert waiting == [
        f"sim waiting because {licence}",
        "render waiting because preempted for rush job 3",
    ]
    table_end = max(i for i, line in enumerate(lines) if "fresh" in line)
    assert lines.index(waiting[0]) > table_end  # under the layer table
    assert lines[0].strip() == "job 7 job: running"


def test_a_paused_job_says_so_in_its_title_until_it_ends() -> None:
    def title(state: str, paused: bool) -> str:
        job = schemas.JobOut(
            id=4,
            name="hello",
            shot_id=1,
            state=state,
            paused=paused,
            submitted_by="someone",
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
            finished_at=None,
            layers=[],
        )
        console = Console(width=100, record=True)
        console.print(job_view(job))
        return console.export_text().splitlines()[0].strip()

    assert title("running", True) == "job 4 hello: running, paused"
    assert title("running", False) == "job 4 hello: running"
    assert title("cancelled", True) == "job 4 hello: cancelled"


def test_a_cost_report_reads_as_money_with_whole_bars_in_80_columns(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from studio_client.cli.jobs import print_report, readable

    assert [readable(x) for x in (0, 0.000046, 0.009742, 0.5, 12345.678)] == [
        "0",
        "0.000046",
        "0.0097",
        "0.50",
        "12,345.68",
    ]
    line = schemas.CostLine(
        key="h100", cost=0.009742, node_hours=0.00004, cpu_hours=0.004, attempts=768
    )
    small = schemas.CostLine(
        key="cpu", cost=0.000046, node_hours=0.0006, cpu_hours=0.017, attempts=96
    )
    report = schemas.CostReport(
        show="seamonster",
        currency="USD",
        total=0.009788,
        node_hours=0.0016,
        by_shot=[line],
        by_department=[line],
        by_pool=[line, small],
        by_job=[line],
    )
    print_report(report)
    out = capsys.readouterr().out
    assert "e-0" not in out and "0.000046" in out and "0.0098 USD" in out
    assert "█" * 12 in out and "…" not in out  # the largest bar whole, nothing cut

"""What a job looks like in the terminal: the live tile grid."""

from __future__ import annotations

from rich.console import Console

from farm import schemas
from farm.vocab import PixelRect
from studio_client.cli._view import tile_grid


def test_tile_grid_shows_each_frames_tiles_in_place_and_its_plan() -> None:
    def tile(i: int, x: int, y: int, state: str) -> schemas.TileOut:
        return schemas.TileOut(
            index=i,
            rect=PixelRect(x0=x, y0=y, x1=x + 10, y1=y + 10),
            state=state,
            attempts=1,
            reason="",
            pool="cpu",
            node="n",
            wall_seconds=1.0,
            cpu_seconds=1.0,
        )  # type: ignore[arg-type]

    frame = schemas.FrameOut(
        number=1001,
        state="running",
        tile_plan="4 tiles (2x2 grid), overscan 8 px",  # type: ignore[arg-type]
        output_path=None,
        preview_path=None,
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
        pool="h100",  # type: ignore[arg-type]
        depends_on=[],
        state="running",
        tile_counts={},
        frames=[frame],
    )  # type: ignore[arg-type]
    console = Console(width=100, record=True)
    console.print(tile_grid(layer))
    lines = console.export_text().splitlines()
    assert lines[0].startswith(" 1001 ■■  running  4 tiles (2x2 grid)")
    assert lines[1].strip() == "■■"

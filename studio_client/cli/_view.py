"""What a job looks like in a terminal: a progress bar per layer and a live tile grid."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from farm import schemas
from farm.states import TileState

STYLE = {
    TileState.WAITING: "grey37",
    TileState.PENDING: "grey62",
    TileState.RUNNING: "yellow",
    TileState.DONE: "green",
    TileState.FAILED: "bold red",
    TileState.CANCELLED: "magenta",
}
BLOCK = "■"


def layer_table(job: schemas.JobOut) -> Table:
    """One row per layer: state, a progress bar of frames done, tiles done / planned, pool."""
    table = Table(title=f"job {job.id} {job.name}: {job.state}", title_justify="left", expand=False)
    for column in ("layer", "kind", "pool", "progress", "frames", "tiles", "state"):
        table.add_column(column)
    for layer in job.layers:
        frames_done = sum(1 for f in layer.frames if f.state == TileState.DONE)
        tiles_total = sum(layer.tile_counts.values())
        tiles_done = layer.tile_counts.get(TileState.DONE, 0)
        table.add_row(
            layer.name,
            layer.kind,
            layer.pool or "any",
            ProgressBar(total=max(len(layer.frames), 1), completed=frames_done, width=28),
            f"{frames_done}/{len(layer.frames)}",
            f"{tiles_done}/{tiles_total}",
            Text(layer.state, style=STYLE[layer.state]),
        )
    return table


def tile_grid(layer: schemas.LayerOut, *, max_frames: int = 12) -> RenderableType:
    """Each frame's tiles laid out as they sit in the image, coloured by state."""
    lines: list[Text] = []
    for frame in layer.frames[:max_frames]:
        rows: dict[int, list[schemas.TileOut]] = {}
        for tile in frame.tiles:
            rows.setdefault(tile.rect.y0, []).append(tile)
        label = Text(f"{frame.number:>5} ", style="bold")
        if not rows:
            lines.append(label + Text("·" * 8 + " waiting", style=STYLE[TileState.WAITING]))
            continue
        for i, y0 in enumerate(sorted(rows)):
            line = label.copy() if i == 0 else Text(" " * 6)
            for tile in sorted(rows[y0], key=lambda t: t.rect.x0):
                line.append(BLOCK, style=STYLE[tile.state])
            if i == 0:
                line.append(f"  {frame.state}", style=STYLE[frame.state])
                if frame.tile_plan:
                    line.append(f"  {frame.tile_plan}", style="dim")
            lines.append(line)
    return Group(*lines)


def job_view(job: schemas.JobOut) -> RenderableType:
    parts: list[RenderableType] = [layer_table(job)]
    for layer in job.layers:
        if layer.kind == "particle_render":
            parts.append(Text(f"tiles of {layer.name} (live)", style="bold"))
            parts.append(tile_grid(layer))
    if job.message:
        parts.append(Text(job.message, style="yellow"))
    return Group(*parts)


def failures(job: schemas.JobOut, limit: int = 5) -> list[str]:
    """The first failed tiles' reasons, one line each."""
    lines = []
    for layer in job.layers:
        for frame in layer.frames:
            for tile in frame.tiles:
                if tile.state == TileState.FAILED:
                    lines.append(
                        f"{layer.name} frame {frame.number} tile {tile.index}: {tile.reason}"
                    )
    return lines[:limit]

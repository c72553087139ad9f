"""What a job looks like in a terminal: a progress bar per layer and a live tile grid."""

from __future__ import annotations

from collections import Counter

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from farm import schemas
from farm.states import TERMINAL, TileState

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
    state = f"{job.state}, paused" if job.paused and job.state not in TERMINAL else job.state
    table = Table(title=f"job {job.id} {job.name}: {state}", title_justify="left", expand=False)
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


def waiting_reasons(job: schemas.JobOut) -> list[tuple[str, str]]:
    """Why each layer with pending tiles waits, as ``(layer, reason)`` in layer order.

    The dispatcher writes the job's message as ``"<layer>: <reason>; ..."`` (the current
    reasons, at most a second old); a layer missing there falls back to its pending tiles'
    most common reason (a tile just requeued says why, e.g. that it was preempted).
    """
    names = {layer.name for layer in job.layers}
    from_message: dict[str, str] = {}
    current = ""
    for part in job.message.split("; ") if job.message else []:
        name, sep, reason = part.partition(": ")
        if sep and name in names:
            current = name
            from_message[name] = reason
        elif current:  # a reason that itself held "; "
            from_message[current] += "; " + part
    out = []
    for layer in job.layers:
        pending = [t.reason for f in layer.frames for t in f.tiles if t.state == TileState.PENDING]
        if not pending:
            continue
        told = [r for r in pending if r and r != "ready"]
        reason = from_message.get(layer.name) or (
            Counter(told).most_common(1)[0][0] if told else ""
        )
        if reason:
            out.append((layer.name, reason))
    return out


def job_view(job: schemas.JobOut) -> RenderableType:
    parts: list[RenderableType] = [layer_table(job)]
    waiting = waiting_reasons(job)
    for name, reason in waiting:
        line = Text(f"{name}", style="bold")
        line.append(" waiting because ", style="default")
        line.append(reason, style="yellow")
        parts.append(line)
    for layer in job.layers:
        if layer.kind == "particle_render":
            parts.append(Text(f"tiles of {layer.name} (live)", style="bold"))
            parts.append(tile_grid(layer))
    if job.message and not waiting:
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

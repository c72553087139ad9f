"""``farm watch JOB``: a job's layers and its live tile grid, drawn from the job's event stream.

Nothing is polled: the job's layout is read once, then every state comes from its events,
replayed from the first (frames start waiting, tiles are born pending: ``EventOut``), so the
picture is the job's state whenever it is drawn.
"""

from __future__ import annotations

import bisect
import time
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.text import Text

from farm import schemas
from farm.states import TileState
from farm.vocab import LayerKind, PixelRect
from studio_client import Client
from studio_client.cli._common import Token, Url, console, make_client
from studio_client.cli._view import failures, layer_table, tile_grid

REDRAW_S = 0.25
"""The picture is redrawn at most this often while events pour in (and once at the end)."""


class LiveJob:
    """A job's states folded from its events, in the shape the views draw (:class:`JobOut`).

    Args:
        job: the job as read once: its layers, kinds and frames. Its states are reset to
            where a job starts, so events replayed from the first bring them to now.

    Example:
        >>> live = LiveJob(client.job(job_id))  # doctest: +SKIP
        >>> for event in client.events(job_id):  # doctest: +SKIP
        ...     live.apply(event)
    """

    def __init__(self, job: schemas.JobOut) -> None:
        self.job = job.model_copy(deep=True)
        self.job.state = TileState.WAITING
        self._layers = {layer.name: layer for layer in self.job.layers}
        self._frames: dict[tuple[str, int], schemas.FrameOut] = {}
        self._tiles: dict[int, schemas.TileOut] = {}
        for layer in self.job.layers:
            layer.state = TileState.WAITING
            for frame in layer.frames:
                frame.state = TileState.WAITING
                frame.tiles = []
                self._frames[layer.name, frame.number] = frame
        needed = {name for layer in self.job.layers for name in layer.depends_on}
        self._outputs = {layer.name for layer in self.job.layers} - needed
        """The layers nothing depends on: their frames are what the studio waits for."""
        self.first_frame_at: datetime | None = None
        """When the first frame of an output layer was done (its event's time)."""
        self.recount()

    def apply(self, event: schemas.EventOut) -> None:
        """Fold one event in; kinds that change no state shown here are skipped."""
        payload = event.payload
        if event.kind == "tiles_planned":
            for tile_id, layer, number, index, x0, y0, x1, y1 in payload["tiles"]:
                self._plan(tile_id, layer, number, index, PixelRect(x0=x0, y0=y0, x1=x1, y1=y1))
        elif event.kind == "tiles":
            for tile_id, state, _where in payload["tiles"]:
                if tile_id in self._tiles:
                    self._tiles[tile_id].state = TileState(state)
        elif event.kind == "frames":
            for _frame_id, layer, number, state in payload["frames"]:
                if layer in self._layers:
                    self._frame(layer, number).state = TileState(state)
                    if state == TileState.DONE and layer in self._outputs:
                        self.first_frame_at = self.first_frame_at or event.created_at
        elif event.kind == "layers":
            for _layer_id, layer, state in payload["layers"]:
                if layer in self._layers:
                    self._layers[layer].state = TileState(state)
        elif event.kind == "job_state":
            self.job.state = TileState(payload["state"])
        elif event.kind == "job_control" and payload.get("action") in ("pause", "resume"):
            self.job.paused = payload["action"] == "pause"
        elif event.kind == "job_priority":
            self.job.priority = int(payload["priority"])
        elif event.kind == "job_rush":
            self.job.rush = bool(payload["rush"])

    def timing(self, finished: schemas.JobOut) -> str | None:
        """When the first frame and the whole job were done, counted from the submit: an
        artist looks at the first frame long before the job ends."""
        if self.first_frame_at is None or finished.finished_at is None:
            return None
        first = (self.first_frame_at - finished.created_at).total_seconds()
        whole = (finished.finished_at - finished.created_at).total_seconds()
        share = f" ({first / whole:.0%} of it)" if whole > 0 else ""
        return f"first frame done {first:.1f} s after the submit{share}; the job {whole:.1f} s"

    def recount(self) -> None:
        """Each frame's and layer's tile counts from its tiles (the views show them)."""
        for layer in self.job.layers:
            totals: dict[TileState, int] = {}
            for frame in layer.frames:
                counts: dict[TileState, int] = {}
                for tile in frame.tiles:
                    counts[tile.state] = counts.get(tile.state, 0) + 1
                frame.tile_counts = counts
                for state, count in counts.items():
                    totals[state] = totals.get(state, 0) + count
            layer.tile_counts = totals

    def view(self) -> RenderableType:
        """A progress bar per layer, then the tile grid of each tiled layer."""
        self.recount()
        parts: list[RenderableType] = [layer_table(self.job)]
        for layer in self.job.layers:
            tiled = any(len(frame.tiles) > 1 for frame in layer.frames)
            if tiled or layer.kind == LayerKind.PARTICLE_RENDER:
                parts.append(Text(f"tiles of {layer.name} (live)", style="bold"))
                parts.append(tile_grid(layer))
        return Group(*parts)

    def _frame(self, layer: str, number: int) -> schemas.FrameOut:
        """The frame, added in number order if the job had not written it when it was read."""
        frame = self._frames.get((layer, number))
        if frame is None:
            frame = schemas.FrameOut(number=number, state=TileState.WAITING, tiles=[])
            frames = self._layers[layer].frames
            at = bisect.bisect([f.number for f in frames], number)
            frames.insert(at, frame)
            self._frames[layer, number] = frame
        return frame

    def _plan(self, tile_id: int, layer: str, number: int, index: int, rect: PixelRect) -> None:
        if layer not in self._layers or tile_id in self._tiles:
            return
        tile = schemas.TileOut(
            index=index,
            rect=rect,
            state=TileState.PENDING,
            attempts=0,
            reason="",
            pool=None,
            node=None,
            wall_seconds=None,
            cpu_seconds=None,
        )
        tiles = self._frame(layer, number).tiles
        tiles.insert(bisect.bisect([t.index for t in tiles], index), tile)
        self._tiles[tile_id] = tile


def follow_job(client: Client, job_id: int) -> schemas.JobOut:
    """Draw the job live from its event stream until it ends; returns it as it ended (what
    ``farm watch``, ``farm submit --wait`` and ``farm status --watch`` show)."""
    live_job = LiveJob(client.job(job_id))
    drawn_at = -REDRAW_S
    with Live(live_job.view(), console=console, refresh_per_second=4) as live:

        def seen(event: schemas.EventOut) -> None:
            nonlocal drawn_at
            live_job.apply(event)
            if time.monotonic() - drawn_at >= REDRAW_S:
                live.update(live_job.view())
                drawn_at = time.monotonic()

        finished = client.wait(job_id, on_event=seen)
        live.update(live_job.view())
    if not console.is_terminal:  # Live ends its last picture with a newline on terminals only
        console.line()
    if finished.state == TileState.DONE and (timing := live_job.timing(finished)):
        console.print(timing)
    return finished


def watch(
    job_id: Annotated[int, typer.Argument(help="the job's id", min=1)],
    url: Url = None,
    token: Token = None,
) -> None:
    """Follow a job live: a progress bar per layer and the tile grid, from its event stream.

    Exits 0 when the job is done, 1 when it failed or was cancelled.
    """
    with make_client(url, token) as client:
        finished = follow_job(client, job_id)
    if finished.state == TileState.DONE:
        return
    console.print(Text(f"job {job_id} {finished.state}", style="red"))
    for line in failures(finished):
        console.print(Text(line, style="red"))
    raise typer.Exit(1)

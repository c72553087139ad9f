"""The executor interface: a stateless, idempotent function of (tile task, input blobs).

An executor reads its inputs from the blob store by hash, writes its output as a new blob and
returns the hash with metrics. It never touches the database: the dispatcher owns state. That
is what makes a retry safe anywhere, on any node of the tile's pool.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farm.storage import BlobStore
from farm.vocab import LayerKind, PixelRect


@dataclass(frozen=True)
class InputTile:
    """A finished tile an assemble task stitches: where it sits and which blob holds it."""

    tile_id: int
    rect: PixelRect
    render_rect: PixelRect
    content_hash: str


@dataclass(frozen=True)
class TileTask:
    """Everything one attempt of one tile needs; plain data, pickled to a Ray worker."""

    tile_id: int
    attempt: int
    job_id: int
    layer: str
    kind: LayerKind
    frame: int
    index: int
    width: int
    height: int
    rect: PixelRect
    render_rect: PixelRect
    layer_spec: dict[str, Any]
    camera: dict[str, Any]
    inputs: dict[str, str] = field(default_factory=dict)
    producers: dict[str, int] = field(default_factory=dict)
    """Input name -> id of the tile of this job that wrote it (a sim frame's cache): when the
    input proves missing or damaged, that tile runs again instead of this one failing."""
    """Named input blobs by hash: ``seed`` (sim), ``cache`` (render)."""
    input_tiles: tuple[InputTile, ...] = ()
    """Assemble only: the render tiles of this frame."""
    channels: tuple[str, ...] = ()
    """Assemble only: the EXR channels to stitch and write, in file order."""
    output_path: str | None = None
    """Assemble only: where the frame's EXR goes (its PNG preview goes beside it)."""
    attributes: dict[str, str | int | float] = field(default_factory=dict)
    """Provenance written into EXR headers (job, layer, frame, renderer, tile plan)."""
    memory_gb: float = 0.0
    """Memory granted to this attempt, GiB (Ray's ``memory`` resource; 0 when unknown)."""
    openjd: dict[str, Any] | None = None
    """Command layers: the job's OpenJD template and parameter values (``OpenJDSource``)."""


@dataclass(frozen=True)
class TileResult:
    """What an attempt returns to the dispatcher."""

    tile_id: int
    attempt: int
    ok: bool
    node: str
    wall_seconds: float
    cpu_seconds: float
    node_id: str = ""
    """Ray's id of the node (host names repeat across a cluster's containers; ids do not)."""
    node_lost: bool = False
    """The attempt never came back because its node died: not the tile's fault."""
    out_of_memory: bool = False
    """The attempt ran out of memory (a ``MemoryError``, or Ray's memory monitor killed it)."""
    output_hash: str | None = None
    error: str | None = None
    """One line saying why the attempt failed (``ok`` is False)."""
    corrupt_input_tiles: tuple[int, ...] = ()
    """Ids of the tiles that wrote inputs found missing or corrupt (they run again first)."""
    outputs: dict[str, str] = field(default_factory=dict)
    """Extra outputs by name: ``exr``, ``preview`` paths and ``preview_hash`` for an assemble."""
    metrics: dict[str, float] = field(default_factory=dict)
    cost_preview: list[list[float]] | None = None
    """Sim only: where the frame's render work lies on screen (``render.cost_preview`` rows),
    so the render layer's first frame is cut into tiles of equal cost before any is measured."""


Executor = Callable[[TileTask, BlobStore], "ExecutorOutput"]


@dataclass(frozen=True)
class ExecutorOutput:
    output_hash: str | None
    outputs: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    corrupt_input_tiles: tuple[int, ...] = ()
    cost_preview: list[list[float]] | None = None


def run_noop(task: TileTask, store: BlobStore) -> ExecutorOutput:
    """The ``noop`` layer's executor: holds its slot ``hold_s`` seconds, succeeds, writes nothing.

    It sleeps in short steps so a cancel (``ray.cancel``, a preemption) stops it promptly. With
    ``needs_memory_gb`` (a fault drill) an attempt granted less memory raises ``MemoryError``,
    as a real renderer does when its allocation fails.
    """
    needs = float(task.layer_spec.get("needs_memory_gb") or 0.0)
    if needs and task.memory_gb < needs:
        raise MemoryError(f"needs {needs:g} GiB, granted {task.memory_gb:g} GiB")
    deadline = time.monotonic() + float(task.layer_spec.get("hold_s", 0.0))
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.05))
    return ExecutorOutput(output_hash=None)


def node_name() -> str:
    """The node an attempt ran on, as reported in tiles and usage records."""
    return socket.gethostname()[:48]


def ray_node_id() -> str:
    """Ray's id of the node this worker runs on ("" outside Ray)."""
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id() or "")
    except Exception:  # not in a Ray worker (a test calling run_tile directly)
        return ""


@contextmanager
def scratch_file(directory: str | Path | None, suffix: str) -> Iterator[str]:
    """A temp file path that is removed afterwards, whatever happens (unless a store adopted
    it: pass ``store.scratch_dir()`` so that adopting is a rename)."""
    import tempfile

    fd, path = tempfile.mkstemp(suffix=suffix, prefix="delta-", dir=directory)
    os.close(fd)
    try:
        yield path
    finally:
        with suppress(FileNotFoundError):
            os.unlink(path)


def run_tile(task: TileTask, store: BlobStore) -> TileResult:
    """Run one attempt with the executor of the task's layer kind; never raises.

    Any exception becomes a failed result whose ``error`` is one readable line, so the
    dispatcher can retry and a user can read why, without a Ray stack trace.
    """
    from scheduler.executors.registry import EXECUTORS

    started = time.perf_counter()
    cpu_started = time.process_time()
    node = node_name()
    node_id = ray_node_id()
    try:
        executor = EXECUTORS[task.kind]
        out = executor(task, store)
        ok = not out.corrupt_input_tiles
        error = None
        if out.corrupt_input_tiles:
            error = f"input tiles {list(out.corrupt_input_tiles)} missing or corrupt"
        return TileResult(
            tile_id=task.tile_id,
            attempt=task.attempt,
            ok=ok,
            node=node,
            node_id=node_id,
            wall_seconds=time.perf_counter() - started,
            cpu_seconds=time.process_time() - cpu_started,
            output_hash=out.output_hash,
            error=error,
            corrupt_input_tiles=out.corrupt_input_tiles,
            outputs=out.outputs,
            metrics=out.metrics,
            cost_preview=out.cost_preview,
        )
    except Exception as exc:
        from scheduler.executors.command import TaskFailed

        return TileResult(
            tile_id=task.tile_id,
            attempt=task.attempt,
            ok=False,
            node=node,
            node_id=node_id,
            wall_seconds=time.perf_counter() - started,
            cpu_seconds=time.process_time() - cpu_started,
            error=_one_line(exc),
            out_of_memory=isinstance(exc, MemoryError),
            outputs=exc.outputs if isinstance(exc, TaskFailed) else {},
        )


def run_tiles(tasks: tuple[TileTask, ...], store: BlobStore) -> tuple[TileResult, ...]:
    """A batch of short tiles of one layer, one after another in one Ray task; never raises.

    Each tile keeps its own attempt and result (the dispatcher asks Ray for one return object
    per tile), so a batch is only a cheaper way to send them (``scheduler.dispatch.batches``).
    """
    return tuple(run_tile(task, store) for task in tasks)


def _one_line(exc: Exception) -> str:
    """Why an attempt failed, in one line: a failed task's own words, else the exception's."""
    from scheduler.executors.command import TaskFailed

    text = str(exc) if isinstance(exc, TaskFailed) else f"{type(exc).__name__}: {exc}"
    return (text.splitlines() or [type(exc).__name__])[0][:500]

"""Render sessions: a long-lived executor on one node for one studio, pulling tiles one by one.

A stateless Ray task per tile pays, in every fresh worker, the imports and kernel loading of its
executor, and reads its inputs again. A session is a Ray actor that pays them once, when it
starts, and keeps what it loaded — a frame's particle cache today, a DCC process with its scene
next — for the tiles that follow, of this job or the studio's next. What it keeps is keyed by
content (a cache's digest and frame), so it stays valid whatever layer asks. The dispatcher
(:mod:`scheduler.dispatch.sessions`) feeds it tiles of one studio only, and stops it when it
has been idle a while or another tile needs its core. The farm's database stays the source of
truth: a session that dies loses only the tile it was running, which goes back to pending.
"""

from __future__ import annotations

import contextvars
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from farm.storage import BlobStore
from farm.vocab import LayerKind
from scheduler.executors.base import TileResult, TileTask, ray_node_id, run_tile


class Loaded:
    """What a session keeps between tiles: loaded inputs by key, least recently used dropped.

    ``get(key, load)`` returns the kept value or loads and keeps it. Hits and misses are
    counted so a tile's metrics show whether the session paid off.
    """

    def __init__(self, capacity: int = 2) -> None:
        self.capacity = capacity
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Any, load: Callable[[], Any]) -> Any:
        if key in self._items:
            self._items.move_to_end(key)
            self.hits += 1
            return self._items[key]
        self.misses += 1
        value = load()
        self._items[key] = value
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return value


_LOADED: contextvars.ContextVar[Loaded | None] = contextvars.ContextVar("loaded", default=None)


def loaded_or(key: Any, load: Callable[[], Any]) -> Any:
    """What an executor calls to read an input: kept by the session it runs in, if any (a
    stateless task has none and loads every time)."""
    kept = _LOADED.get()
    return load() if kept is None else kept.get(key, load)


@contextmanager
def _keeping(loaded: Loaded) -> Iterator[None]:
    token = _LOADED.set(loaded)
    try:
        yield
    finally:
        _LOADED.reset(token)


def warm(kind: LayerKind) -> None:
    """Load what the executor of ``kind`` needs before the first tile arrives: its modules and,
    for a particle render, its compiled kernels (from numba's on-disk cache)."""
    import scheduler.executors.registry  # noqa: F401  (every executor's imports)

    if kind is LayerKind.PARTICLE_RENDER:
        import tempfile
        from pathlib import Path

        import numpy as np

        from farm.particles.cache import ParticleFrame, prepare_frame, read_cache, write_cache
        from farm.particles.camera import Camera
        from farm.particles.render import render_frame, render_rect
        from farm.vocab import PixelRect

        one = ParticleFrame(
            frame=1,
            position=np.zeros((1, 3), np.float32),
            velocity=np.zeros((1, 3), np.float32),
            radius=np.full(1, 0.1, np.float32),
            colour=np.ones((1, 4), np.float32),
            id=np.zeros(1, np.uint32),
        )
        camera = Camera(position=(0, 0, 5), look_at=(0, 0, 0))
        render_frame(one, camera, width=8, height=8)
        # A tile of a prepared frame read from a cache file (read-only, chunked arrays) takes
        # the kernels' other signatures.
        with tempfile.TemporaryDirectory(prefix="delta-warm-") as tmp:
            path = Path(tmp) / "one.dpc"
            write_cache(path, [prepare_frame(one)])
            cached = read_cache(path)
            tile = PixelRect(x0=0, y0=0, x1=4, y1=4)
            frame = cached.frame(cached.frames[0])
            render_rect(frame, camera, width=8, height=8, rect=tile)


def warm_worker() -> str:
    """A Ray task that warms the worker process it lands on for every executor: imports and the
    particle kernels. The dispatcher sends one per CPU of the cluster when it starts, while the
    studio is still uploading, so the first tiles do not each pay a cold worker (about 1-2 s
    on this machine). Returns the node id (for logs)."""
    warm(LayerKind.PARTICLE_RENDER)
    return ray_node_id()


class TileSession:
    """One render session (wrapped with ``ray.remote`` by the dispatcher's session pool)."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.loaded = Loaded()
        self.tiles = 0
        warm(LayerKind.PARTICLE_RENDER)  # every executor's imports, and the particle kernels

    def node(self) -> str:
        """The Ray node id this session lives on."""
        return ray_node_id()

    def run(self, task: TileTask) -> TileResult:
        """Run one tile, keeping what it loads for the next (never raises, like ``run_tile``)."""
        with _keeping(self.loaded):
            result = run_tile(task, self.store)
        self.tiles += 1
        metrics = {
            **result.metrics,
            "session_tile": float(self.tiles),
            "session_hits": float(self.loaded.hits),
        }
        return replace(result, metrics=metrics)

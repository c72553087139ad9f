"""Particle executors: the sim (seed -> one frame's cache) and the tile render."""

from __future__ import annotations

import numpy as np

from farm.errors import InvalidSpec, NotFound
from farm.exr.assemble import write_tile
from farm.particles.cache import (
    ParticleFrame,
    prepare_frame,
    read_cache,
    validate_frame,
    write_cache,
)
from farm.particles.camera import Camera
from farm.particles.monster import simulate
from farm.particles.render import cost_preview, render_rect
from farm.storage import BlobStore
from farm.vocab import AOV
from scheduler.executors.base import ExecutorOutput, TileTask, scratch_file
from scheduler.executors.session import loaded_or


def run_particle_sim(task: TileTask, store: BlobStore) -> ExecutorOutput:
    """Advance the seed cache to ``task.frame``; write a spatially prepared one-frame cache.

    The output is validated before it is stored, so a sim that produced bad particles fails
    here with the field and index named, and no render tile is ever sent for that frame.
    """
    with store.local_path(task.inputs["seed"]) as seed_path:
        seed_cache = read_cache(seed_path)
        seed = seed_cache.frame(seed_cache.frames[0])
        state = prepare_frame(simulate(seed, task.frame, start_frame=seed.frame))
    validate_frame(state)
    preview = cost_preview(
        state, Camera.model_validate(task.camera), width=task.width, height=task.height
    )
    with scratch_file(store.scratch_dir(), ".dpc") as path:
        write_cache(path, [state])
        put = store.adopt_file(path)
    return ExecutorOutput(
        output_hash=put.content_hash,
        metrics={"particles": float(state.count)},
        cost_preview=compact(preview),
    )


def compact(preview: np.ndarray) -> list[list[float]]:
    """The preview scaled to whole numbers up to 10,000: a few KB of JSON per sim frame."""
    top = float(preview.max(initial=0.0))
    scaled = np.round(preview * (10_000 / top)) if top > 0 else np.zeros_like(preview)
    return [[float(v) for v in row] for row in scaled.astype(np.int64)]


def run_particle_render(task: TileTask, store: BlobStore) -> ExecutorOutput:
    """Render the tile's render rectangle (its rect plus overscan) into an uncompressed tile EXR."""
    camera = Camera.model_validate(task.camera)
    aovs = [AOV(a) for a in task.layer_spec.get("aovs", list(AOV))]
    cache_hash = task.inputs["cache"]

    def load() -> ParticleFrame:
        # The cache is memory-mapped: the frame stays readable after the local copy's context
        # ends (a disk store's file is immutable; a downloaded one stays mapped when unlinked).
        with store.local_path(cache_hash) as cache_path:
            return read_cache(cache_path).frame(task.frame)

    try:
        # A render session keeps the frame for its next tiles; a stateless task loads it.
        frame = loaded_or(("particle_cache", cache_hash, task.frame), load)
    except (NotFound, InvalidSpec):
        producer = task.producers.get("cache")
        if producer is None:  # a published cache asset: nothing here can make it again
            raise
        return ExecutorOutput(output_hash=None, corrupt_input_tiles=(producer,))
    channels = render_rect(
        frame,
        camera,
        width=task.width,
        height=task.height,
        rect=task.render_rect,
        aovs=aovs,
    )
    with scratch_file(store.scratch_dir(), ".exr") as path:
        write_tile(
            path,
            channels,
            render_rect=task.render_rect,
            width=task.width,
            height=task.height,
            attributes={"delta/tile": task.index, "delta/frame": task.frame},
            atomic=False,
        )
        put = store.adopt_file(path)
    return ExecutorOutput(output_hash=put.content_hash)

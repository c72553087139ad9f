"""Which executor runs which layer kind."""

from __future__ import annotations

from collections.abc import Callable

from farm.storage import BlobStore
from farm.vocab import LayerKind
from scheduler.executors.assemble import run_assemble
from scheduler.executors.base import ExecutorOutput, TileTask, run_noop
from scheduler.executors.command import run_command
from scheduler.executors.particle import run_particle_render, run_particle_sim

EXECUTORS: dict[LayerKind, Callable[[TileTask, BlobStore], ExecutorOutput]] = {
    LayerKind.PARTICLE_SIM: run_particle_sim,
    LayerKind.PARTICLE_RENDER: run_particle_render,
    LayerKind.ASSEMBLE: run_assemble,
    LayerKind.NOOP: run_noop,
    LayerKind.COMMAND: run_command,
}

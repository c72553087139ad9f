"""The simulator's jobs and layers: their ready queues, as the planner reads them.

A layer's ready tiles are one list and a head: the planner takes from the front, so a started
tile moves the head on, and a preempted tile goes back just before the head (the slot it came
from is spent, and no more tiles were taken from this layer than the head has passed). The
planner reads each layer through one :class:`~scheduler.plan.Work` made once, whose ``tiles``
is a live view of that queue: a tick builds no per-tile objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import overload

from scheduler.plan import RunningTile, TileKey, Work
from scheduler.simulate_traces import TraceJob, TraceLayer


@dataclass(eq=False)
class SimJob:
    """A traced job being replayed: its layers and when it first ran."""

    job_id: int
    studio_id: int
    spec: TraceJob
    layers: list[Layer] = field(default_factory=list)
    layers_left: int = 0
    first_start_s: float | None = None
    done_s: float | None = None
    preempted: int = 0

    def __post_init__(self) -> None:
        self.layers_left = len(self.spec.layers)

    @property
    def wait_s(self) -> float | None:
        """Submission to first tile start (None if it never started)."""
        return None if self.first_start_s is None else self.first_start_s - self.spec.submit_s


class Layer:
    """One layer of a :class:`SimJob`: tile ids ``first_tile ..`` in rank order.

    Args:
        position: its place in the job (the ``layer_position`` of its tile keys).
        pools: where its tiles may run, in the order the farm prefers (see ``Work.pools``).
        accelerated: its cheapest pool carries accelerators.
        backfill_pools: pools where it runs as CPU-only backfill on accelerator nodes.
    """

    def __init__(
        self,
        layer_id: int,
        job: SimJob,
        *,
        position: int,
        spec: TraceLayer,
        pools: tuple[str, ...],
        accelerated: bool,
        backfill_pools: frozenset[str],
        first_tile: int,
    ) -> None:
        self.layer_id = layer_id
        self.job = job
        self.position = position
        self.spec = spec
        self.pools = pools
        self.accelerated = accelerated
        self.backfill_pools = backfill_pools
        self.first_tile = first_tile
        self.waiting_on = 0
        """Layers of the job this one depends on that still have tiles to finish."""
        self.dependents: list[Layer] = []
        self.done = 0
        self.queue: list[TileKey] = []
        self.head = 0
        self.work = Work(
            job.studio_id,
            job.job_id,
            layer_id,
            _Ready(self),
            pools,
            priority=job.spec.priority,
            rush=job.spec.rush,
            licences=spec.licences,
            accelerated=accelerated,
        )

    def fill_queue(self) -> None:
        """Every tile becomes ready (its dependencies are done); frame 0, rank = tile order."""
        first = self.first_tile
        self.queue = [(0, self.position, rank, first + rank) for rank in range(self.spec.tiles)]
        self.head = 0

    @property
    def remaining(self) -> int:
        """Ready tiles not yet started."""
        return len(self.queue) - self.head

    def take(self) -> TileKey:
        """The front tile, now started."""
        key = self.queue[self.head]
        self.head += 1
        return key

    def requeue(self, key: TileKey) -> None:
        """A preempted tile goes back to the front of the queue."""
        self.head -= 1
        self.queue[self.head] = key

    def running_tile(self, tile_id: int, pool: str, started: float) -> RunningTile:
        """How preemption sees one of this layer's tiles in flight on ``pool``."""
        return RunningTile(
            tile_id,
            self.job.studio_id,
            pool,
            started,
            rush=self.job.spec.rush,
            backfill=pool in self.backfill_pools,
        )


class _Ready(Sequence[TileKey]):
    """The ready tiles of a layer, from its head: what ``Work.tiles`` reads (no copy)."""

    __slots__ = ("_layer",)

    def __init__(self, layer: Layer) -> None:
        self._layer = layer

    def __len__(self) -> int:
        layer = self._layer  # the planner asks often: no property hop
        return len(layer.queue) - layer.head

    @overload
    def __getitem__(self, index: int) -> TileKey: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[TileKey]: ...

    def __getitem__(self, index: int | slice) -> TileKey | Sequence[TileKey]:
        layer = self._layer
        if isinstance(index, slice):
            return layer.queue[layer.head :][index]
        if index < 0:
            index += len(layer.queue) - layer.head
            if index < 0:
                raise IndexError(index)
        return layer.queue[layer.head + index]

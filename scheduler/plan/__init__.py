"""The pure planner: which pending tiles run now, on which pool. No Ray, no DB, no clock.

``plan(snapshot) -> decisions`` is deterministic: ties break on stable keys, so the dispatcher,
a simulator and the tests get the same answer from the same snapshot. Fair share, limits and
cost-aware placement will deepen this function; its inputs and outputs stay the same shape.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class PendingTile:
    """A tile ready to run. Field order is the FIFO order inside one studio.

    Frame before layer: frame 1's assemble goes ahead of frame 2's render tiles, so frames
    finish one after another (progressive) instead of all at the end. Inside a frame's layer,
    ``rank`` puts the slowest estimated tiles first (``scheduler.tiles.dispatch_ranks``).
    """

    job_id: int
    frame: int
    layer_position: int
    rank: int
    tile_id: int
    studio_id: int = field(compare=False)
    pool: str = field(compare=False)


@dataclass(frozen=True)
class Snapshot:
    """What the planner sees: ready tiles and each pool's free slots (in-flight already counted)."""

    pending: Sequence[PendingTile]
    free_slots: Mapping[str, int]
    """Pool name -> how many more tiles may be sent to it now."""


@dataclass(frozen=True)
class Decision:
    tile_id: int
    pool: str


def plan(snapshot: Snapshot) -> list[Decision]:
    """Fill each pool's free slots, alternating between studios so none waits behind another.

    Inside a studio, tiles go oldest job first, then by frame, layer and rank: earlier frames
    finish (and assemble) first, which is what an artist watching dailies wants, and each
    frame's slow tiles start before its cheap ones, so the workers finish the frame together.
    """
    by_pool_studio: dict[str, dict[int, deque[PendingTile]]] = defaultdict(dict)
    for tile in sorted(snapshot.pending):
        by_pool_studio[tile.pool].setdefault(tile.studio_id, deque()).append(tile)
    decisions: list[Decision] = []
    for pool in sorted(by_pool_studio):
        slots = max(0, snapshot.free_slots.get(pool, 0))
        queues = [by_pool_studio[pool][studio] for studio in sorted(by_pool_studio[pool])]
        while slots > 0 and queues:
            for queue in list(queues):
                if slots == 0:
                    break
                decisions.append(Decision(queue.popleft().tile_id, pool))
                slots -= 1
                if not queue:
                    queues.remove(queue)
    return decisions

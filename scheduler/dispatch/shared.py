"""Pools that share cores: the embedded farm's virtual pools (cpu, h100, ascend on one machine).

A real farm's pools are separate nodes, and each pool keeps its own queue in Ray
(``Dispatcher._target``). Pools on the same cores are different: what waits in Ray's queue for
one pool waits behind the others' work too (Ray runs what it was given first), so a sim sent
ahead takes the core that the frame before it needed for its render. This module decides which
of the planner's picks go to Ray now on such cores; the planner has already made each one
feasible under fair share, ceilings and licences.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from scheduler.plan import Decision

SHARED_QUEUE_TILE_S = 0.25
"""Tiles measured at most this long may queue on cores shared by pools."""


@dataclass(frozen=True, slots=True)
class LayerShape:
    """What the choice needs to know of a pick's layer."""

    slots: int
    """Cores one tile takes."""
    tile_s: float
    """Its measured mean tile time (0 while none has ended)."""
    depth: tuple[int, int]
    """Sort key: earliest frame first, then the deepest layer (``(frame, -position)``)."""


@dataclass(slots=True)
class _Group:
    free: int
    """Cores not yet given a tile."""
    queued: int
    """Tiles given beyond the cores (waiting in Ray's queue)."""
    cores: int
    working: int
    """Pools of the group with tiles in flight or picked now."""
    stopped: bool = False


def within_shared_cores(
    decisions: list[Decision],
    *,
    groups: Collection[frozenset[str]],
    cores: Mapping[str, float],
    in_flight: Mapping[str, int],
    coming: Collection[str],
    layer_of: Callable[[Decision], LayerShape],
    queue_s: float,
) -> list[Decision]:
    """The picks to send now, in the planner's order; the rest stay ready for the next tick.

    Args:
        decisions: the planner's picks.
        groups: pools that share cores, one set per group.
        cores: Ray's capacity per pool (each pool of a group sees all of its cores).
        in_flight: tiles sent and not collected, per pool.
        coming: pools that unfinished layers run on (their waiting frames included).
        layer_of: the shape of a pick's layer.
        queue_s: the dispatcher's round trip to cover with queued work.

    While only one pool of a group has work at all, the group is left alone: that pool's own
    target and queue apply (a session's next tile waits on its actor; thousands of noop tiles go
    in batches). Otherwise picks are taken earliest frame and deepest layer first (a frame's
    render and assembly before the next frames' sims) up to the free cores. Beyond them only
    short tiles queue (a layer measured at most :data:`SHARED_QUEUE_TILE_S` a tile): as many as
    they like while one pool is at work, else ``queue_s`` of their work, at most one per core,
    so a core does not idle through a dispatcher round trip between two 40 ms render tiles (a
    demo frame's 16 tiles took 1 s for 0.35 s of work). A long tile, or one not measured yet,
    never queues, and once one must wait nothing later in the order jumps ahead of it.
    """
    if not groups or not decisions:
        return decisions
    picked = {d.pool for d in decisions}
    at_work = {pool for pool, n in in_flight.items() if n > 0}
    with_work = at_work | picked | set(coming)
    group_of: dict[str, _Group] = {}
    for pools in groups:
        if len(with_work & pools) <= 1:
            continue
        total = max((int(cores.get(p, 0)) for p in pools), default=0)
        busy = sum(in_flight.get(p, 0) for p in pools)
        group = _Group(
            free=max(0, total - busy),
            queued=max(0, busy - total),
            cores=total,
            working=len((at_work | picked) & pools),
        )
        for pool in pools:
            group_of[pool] = group
    shapes = [layer_of(d) for d in decisions]
    kept: set[int] = set()
    for i in sorted(range(len(decisions)), key=lambda i: shapes[i].depth):
        shared = group_of.get(decisions[i].pool)
        if shared is None:
            kept.add(i)
            continue
        if shared.stopped:
            continue
        shape = shapes[i]
        queue = shared_queue(shape.tile_s, shared.cores, queue_s)
        if shared.free >= shape.slots:
            shared.free -= shape.slots
            kept.add(i)
        elif shared.free == 0 and queue and (shared.working <= 1 or shared.queued < queue):
            shared.queued += 1  # a short tile waits in Ray's queue for the next free core
            kept.add(i)
        else:
            shared.stopped = True
    return [d for i, d in enumerate(decisions) if i in kept]


def shared_queue(tile_s: float, cores: int, queue_s: float) -> int:
    """Tiles of a layer that may wait in Ray's queue of shared cores: ``queue_s`` of its work,
    at most one per core; none for a layer not measured short."""
    if not 0 < tile_s <= SHARED_QUEUE_TILE_S or queue_s <= 0:
        return 0
    return min(cores, math.ceil(cores * queue_s / tile_s))

"""Batches of short tiles: several tiles of one layer in one Ray task.

A Ray task costs about a millisecond of driver, raylet and worker time on this kind of machine
(submit, schedule, pickle, return), whatever it does. A tile of a few milliseconds (a noop, a
tiny command, a small sim step) then spends more on Ray than on its work, and the farm can never
run more tiles a second than Ray runs tasks. So once a layer's tiles are measured short, the
tiles the planner gave one pool in one tick go to Ray a few at a time: one task, one return
object per tile (``num_returns``), each tile still its own attempt with its own result, state,
usage record and retry. Like Deadline's and OpenJD's *chunks*, but sized by the farm from what it
measured, never by the user, and only for work short enough that nobody sees the difference.

What a batch changes and what it does not:
- Fair share, quotas and licences are decided per tile by the planner before batching; a batch
  only groups what one pool was already given, so every tile is counted as before.
- A batch runs its tiles one after another on one slot, so it is kept to about ``BATCH_S`` of
  work and never starves a pool's other slots (at least one batch per slot).
- Stopping one tile of a batch (a rush preemption, a cancel) stops its Ray task; the others come
  back pending as *preempted*, with no attempt counted, and run again.
- A lost worker loses the whole batch: each tile counts a failed attempt, as when one tile's
  worker dies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

BATCH_S = 0.02
"""About how long one batch runs: long enough to hide Ray's per-task cost, short enough that
fair share, cancels and progress stay tile-grained to the eye."""
MAX_BATCH = 64
"""Tiles in one batch at most."""
EWMA = 0.2
"""Weight of the newest attempt in a layer's measured tile time."""


def batch_size(tile_s: float, tiles: int, slots: int) -> int:
    """Tiles per Ray task for ``tiles`` of one layer given to a pool of ``slots`` slots.

    ``tile_s`` is the layer's measured mean tile time (0 while nothing was measured: a layer's
    first tiles go one per task until one of them says how long a tile takes). The batch is at
    most ``BATCH_S`` of work and small enough that every slot gets one.
    """
    if tile_s <= 0 or tiles <= 1:
        return 1
    by_time = int(BATCH_S / tile_s)
    by_slots = math.ceil(tiles / max(1, slots))
    return max(1, min(by_time, by_slots, MAX_BATCH))


def measured(previous: float, wall_s: float) -> float:
    """A layer's mean tile time after one more successful attempt of ``wall_s`` seconds."""
    return wall_s if previous <= 0 else (1 - EWMA) * previous + EWMA * wall_s


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """``items`` cut into runs of at most ``size``, as evenly as possible, in order."""
    if size <= 1 or len(items) <= 1:
        return [items[i : i + 1] for i in range(len(items))]
    count = math.ceil(len(items) / size)
    step, extra = divmod(len(items), count)
    out, start = [], 0
    for i in range(count):
        end = start + step + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out

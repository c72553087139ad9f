"""Which of the planner's picks go to Ray now when pools share cores (the embedded farm)."""

from __future__ import annotations

from itertools import count

from scheduler.dispatch.shared import (
    SHARED_QUEUE_TILE_S,
    LayerShape,
    shared_queue,
    within_shared_cores,
)
from scheduler.plan import Decision

GROUP = frozenset({"cpu", "h100", "ascend"})
CORES = {"cpu": 2.0, "h100": 2.0, "ascend": 2.0}

SIM = 1  # layer ids: the sim of a shot (long tiles) ...
RENDER = 2  # ... its render (short tiles once measured) ...
COMP = 3  # ... and its assembly
_ids = count(1)


def pick(layer: int, pool: str) -> Decision:
    return Decision(tile_id=next(_ids), pool=pool, job_id=1, layer_id=layer)


def choose(
    decisions: list[Decision],
    shapes: dict[int, LayerShape],
    *,
    in_flight: dict[str, int] | None = None,
    coming: set[str] | None = None,
    queue_s: float = 0.05,
) -> list[Decision]:
    return within_shared_cores(
        decisions,
        groups=(GROUP,),
        cores=CORES,
        in_flight=in_flight or {},
        coming=coming if coming is not None else {d.pool for d in decisions},
        layer_of=lambda d: shapes[d.layer_id],
        queue_s=queue_s,
    )


def test_a_pool_alone_on_the_cores_keeps_its_own_queue() -> None:
    # Only the cpu pool has work at all: every pick goes (its own target limits them), so a
    # render session's next tile can wait on its actor and noop tiles go in deep batches.
    shapes = {SIM: LayerShape(slots=1, tile_s=0.0, depth=(1, 0))}
    picks = [pick(SIM, "cpu") for _ in range(6)]
    assert choose(picks, shapes, in_flight={"cpu": 2}) == picks


def test_the_earliest_frames_deepest_layer_takes_the_free_core() -> None:
    # One core free; frame 3's sim and frame 1's render both picked: the render goes, the sim
    # does not wait in Ray's queue where it would take the core the render needs next.
    shapes = {
        SIM: LayerShape(slots=1, tile_s=1.2, depth=(3, 0)),
        RENDER: LayerShape(slots=1, tile_s=1.0, depth=(1, -1)),
    }
    sim, render = pick(SIM, "cpu"), pick(RENDER, "h100")
    assert choose([sim, render], shapes, in_flight={"cpu": 1}) == [render]


def test_long_or_unmeasured_tiles_never_queue_while_another_pool_has_work_coming() -> None:
    # Sims alone at work, but the render layer waits on them (its pool is coming): sims take
    # the free cores and no more, measured long or not measured yet.
    for tile_s in (0.0, SHARED_QUEUE_TILE_S * 4):
        shapes = {SIM: LayerShape(slots=1, tile_s=tile_s, depth=(1, 0))}
        picks = [pick(SIM, "cpu") for _ in range(5)]
        kept = choose(picks, shapes, coming={"cpu", "h100"})
        assert kept == picks[:2], tile_s


def test_short_tiles_queue_one_per_core_while_two_pools_are_at_work() -> None:
    # 40 ms render tiles beside a running sim: no core is free, yet up to one tile per core
    # waits in Ray's queue, so no core idles through a dispatcher round trip.
    shapes = {RENDER: LayerShape(slots=1, tile_s=0.04, depth=(1, -1))}
    picks = [pick(RENDER, "h100") for _ in range(8)]
    kept = choose(picks, shapes, in_flight={"cpu": 1, "h100": 1})
    assert kept == picks[:2]


def test_short_tiles_queue_freely_while_their_pool_is_the_only_one_at_work() -> None:
    shapes = {RENDER: LayerShape(slots=1, tile_s=0.002, depth=(1, -1))}
    picks = [pick(RENDER, "h100") for _ in range(50)]
    kept = choose(picks, shapes, in_flight={"h100": 2}, coming={"h100", "cpu"})
    assert kept == picks


def test_nothing_jumps_ahead_of_a_bigger_tile_that_waits() -> None:
    # The assembly needs 2 cores and 1 is free: it waits, and the later sim does not take the
    # core it is waiting for.
    shapes = {
        COMP: LayerShape(slots=2, tile_s=0.6, depth=(1, -2)),
        SIM: LayerShape(slots=1, tile_s=1.2, depth=(2, 0)),
    }
    comp, sim = pick(COMP, "cpu"), pick(SIM, "cpu")
    assert choose([sim, comp], shapes, in_flight={"h100": 1}, coming={"cpu", "h100"}) == []


def test_pools_outside_any_group_are_left_alone() -> None:
    shapes = {SIM: LayerShape(slots=1, tile_s=5.0, depth=(1, 0))}
    picks = [pick(SIM, "farm-cpu") for _ in range(10)]
    assert choose(picks, shapes, in_flight={"cpu": 2, "h100": 2}) == picks


def test_the_queue_covers_queue_s_of_work_at_most_one_tile_per_core() -> None:
    assert shared_queue(0.0, 16, 0.05) == 0  # not measured yet
    assert shared_queue(SHARED_QUEUE_TILE_S + 0.01, 16, 0.05) == 0  # long
    assert shared_queue(0.1, 16, 0.05) == 8
    assert shared_queue(0.01, 16, 0.05) == 16
    assert shared_queue(0.01, 16, 0.0) == 0

"""The pure planner: fills free slots, alternates studios, is deterministic, finds dead pools."""

from __future__ import annotations

from scheduler.plan import PendingTile, Snapshot, plan


def tile(
    tile_id: int, *, studio: int = 1, job: int = 1, frame: int = 0, pool: str = "cpu"
) -> PendingTile:
    return PendingTile(
        job_id=job,
        layer_position=0,
        frame=frame,
        rank=tile_id,
        tile_id=tile_id,
        studio_id=studio,
        pool=pool,
    )


def test_fills_only_the_free_slots_oldest_first() -> None:
    pending = [tile(i) for i in (5, 3, 4, 1, 2)]
    decisions = plan(Snapshot(pending=pending, free_slots={"cpu": 3}))
    assert [d.tile_id for d in decisions] == [1, 2, 3]
    assert {d.pool for d in decisions} == {"cpu"}


def test_alternates_between_studios_so_none_waits_behind_another() -> None:
    pending = [tile(i, studio=1, job=1) for i in range(1, 6)] + [
        tile(i, studio=2, job=2) for i in range(10, 12)
    ]
    decisions = plan(Snapshot(pending=pending, free_slots={"cpu": 4}))
    assert [d.tile_id for d in decisions] == [1, 10, 2, 11]


def test_pools_are_planned_independently() -> None:
    pending = [tile(1, pool="cpu"), tile(2, pool="h100"), tile(3, pool="h100")]
    decisions = plan(Snapshot(pending=pending, free_slots={"cpu": 0, "h100": 1}))
    assert [(d.tile_id, d.pool) for d in decisions] == [(2, "h100")]


def test_same_snapshot_same_decisions() -> None:
    pending = [tile(i, studio=i % 3, job=i % 4) for i in range(40)]
    snapshot = Snapshot(pending=pending, free_slots={"cpu": 17})
    assert plan(snapshot) == plan(Snapshot(pending=list(reversed(pending)), free_slots={"cpu": 17}))


def test_a_frames_assemble_goes_before_the_next_frames_render_tiles() -> None:
    def at(tile_id: int, frame: int, layer: int) -> PendingTile:
        return PendingTile(
            job_id=1,
            frame=frame,
            layer_position=layer,
            rank=0,
            tile_id=tile_id,
            studio_id=1,
            pool="cpu",
        )

    pending = [at(1, frame=2, layer=1), at(2, frame=1, layer=2), at(3, frame=2, layer=2)]
    decisions = plan(Snapshot(pending=pending, free_slots={"cpu": 1}))
    assert [d.tile_id for d in decisions] == [2]

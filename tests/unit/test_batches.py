"""How many short tiles go to Ray in one task (``scheduler.dispatch.batches``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scheduler.dispatch.batches import BATCH_S, MAX_BATCH, batch_size, chunks, measured


def test_unmeasured_or_long_tiles_go_one_task_each() -> None:
    assert batch_size(0.0, 500, 2) == 1  # nothing measured yet
    assert batch_size(BATCH_S, 500, 2) == 1  # a tile as long as a batch
    assert batch_size(3.0, 500, 2) == 1
    assert batch_size(0.001, 1, 2) == 1


def test_short_tiles_fill_about_one_batch_time_but_every_slot_gets_work() -> None:
    assert batch_size(BATCH_S / 10, 500, 2) == 10
    assert batch_size(1e-6, 10_000, 2) == MAX_BATCH
    assert batch_size(1e-6, 8, 4) == 2  # 4 slots: 4 batches of 2, not one of 8
    assert batch_size(1e-6, 5, 2) == 3


@given(
    st.lists(st.integers(), max_size=300),
    st.integers(min_value=1, max_value=MAX_BATCH),
)
def test_chunks_keep_every_item_in_order_and_stay_even(items: list[int], size: int) -> None:
    parts = chunks(items, size)
    assert [x for part in parts for x in part] == items
    assert all(1 <= len(part) <= size for part in parts)
    if parts:
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_a_layers_tile_time_follows_its_recent_attempts() -> None:
    assert measured(0.0, 0.5) == 0.5
    t = 0.5
    for _ in range(40):
        t = measured(t, 0.001)
    assert abs(t - 0.001) < 1e-4

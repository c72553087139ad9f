"""The tile planner: exact coverage, overscan, grid limits, adaptive split and merge, JSON."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from farm.errors import InvalidSpec
from farm.vocab import PixelRect
from scheduler.tiles import (
    TilePlan,
    TileTimes,
    balanced_plan,
    check_coverage,
    dispatch_ranks,
    grid_rects,
    plan_tiles,
    replan,
    size_rects,
)

sizes = st.integers(min_value=1, max_value=300)


@st.composite
def grids(draw: st.DrawFn) -> tuple[int, int, int, int]:
    width, height = draw(sizes), draw(sizes)
    cols = draw(st.integers(min_value=1, max_value=min(width, 24)))
    rows = draw(st.integers(min_value=1, max_value=min(height, 24)))
    return width, height, cols, rows


@settings(deadline=None)  # a loaded 2-core machine makes timings unreliable
@given(grids())
def test_grid_covers_frame_exactly_once(grid: tuple[int, int, int, int]) -> None:
    width, height, cols, rows = grid
    rects = grid_rects(width, height, cols, rows)
    assert len(rects) == cols * rows
    check_coverage(rects, width, height)
    widths = {r.width for r in rects}
    heights = {r.height for r in rects}
    assert max(widths) - min(widths) <= 1
    assert max(heights) - min(heights) <= 1


@settings(deadline=None)
@given(sizes, sizes, st.integers(4, 400), st.integers(4, 400))
def test_size_rects_cover_and_respect_target(w: int, h: int, tw: int, th: int) -> None:
    rects = size_rects(w, h, tw, th)
    check_coverage(rects, w, h)
    assert all(r.width <= tw and r.height <= th for r in rects)


@settings(deadline=None)
@given(grids(), st.integers(0, 64))
def test_overscan_render_rect_contains_rect_and_stays_in_image(
    grid: tuple[int, int, int, int], overscan: int
) -> None:
    width, height, cols, rows = grid
    plan = plan_tiles(width, height, cols=cols, rows=rows, overscan=overscan)
    image = PixelRect(x0=0, y0=0, x1=width, y1=height)
    for i, tile in enumerate(plan):
        assert tile.index == i
        assert tile.render_rect.contains(tile.rect)
        assert image.contains(tile.render_rect)
        assert tile.render_rect == tile.rect.expand(overscan, width=width, height=height)


def test_plan_is_row_major() -> None:
    plan = plan_tiles(100, 50, cols=4, rows=2)
    keys = [(t.rect.y0, t.rect.x0) for t in plan]
    assert keys == sorted(keys)
    assert plan.describe() == "8 tiles (4x2 grid), overscan 0 px"


@pytest.mark.parametrize(
    ("cols", "rows", "limit"),
    [(11, 1, "1 to 10"), (1, 6, "1 to 5"), (0, 1, "1 to 10"), (1, -1, "1 to 5")],
)
def test_grid_larger_than_image_is_invalid_spec_naming_field(
    cols: int, rows: int, limit: str
) -> None:
    with pytest.raises(InvalidSpec) as info:
        plan_tiles(10, 5, cols=cols, rows=rows)
    assert info.value.field == "tiles"
    assert limit in info.value.message


def test_plan_rejects_grid_and_size_together_and_negative_overscan() -> None:
    with pytest.raises(InvalidSpec, match="not both"):
        plan_tiles(10, 10, cols=2, tile_width=4)
    with pytest.raises(InvalidSpec) as info:
        plan_tiles(10, 10, cols=2, overscan=-1)
    assert info.value.field == "overscan"


def test_plan_by_tile_size() -> None:
    plan = plan_tiles(1920, 1080, tile_width=256, overscan=8)
    assert plan.describe() == "40 tiles (8x5 grid), overscan 8 px"
    check_coverage([t.rect for t in plan], 1920, 1080)


def test_check_coverage_names_first_gap_and_overlap() -> None:
    with pytest.raises(ValueError, match=r"pixel \(x=5, y=0\) is not covered"):
        check_coverage([PixelRect(x0=0, y0=0, x1=5, y1=4)], 10, 4)
    overlap = [PixelRect(x0=0, y0=0, x1=6, y1=4), PixelRect(x0=5, y0=0, x1=10, y1=4)]
    with pytest.raises(ValueError, match=r"pixel \(x=5, y=0\) is covered by 2 tiles"):
        check_coverage(overlap, 10, 4)
    with pytest.raises(ValueError, match="leaves"):
        check_coverage([PixelRect(x0=0, y0=0, x1=11, y1=4)], 10, 4)


def test_json_round_trip() -> None:
    plan = plan_tiles(640, 360, cols=5, rows=3, overscan=12)
    data = json.loads(json.dumps(plan.to_json()))
    assert TilePlan.from_json(data) == plan


def test_from_json_rejects_bad_cover() -> None:
    data = plan_tiles(64, 64, cols=2, rows=2).to_json()
    data["tiles"] = data["tiles"][:-1]
    with pytest.raises(InvalidSpec) as info:
        TilePlan.from_json(data)
    assert info.value.field == "tile_plan"
    with pytest.raises(InvalidSpec):
        TilePlan.from_json({"width": 4})


def test_replan_splits_hot_tile_and_merges_cold_neighbours() -> None:
    plan = plan_tiles(256, 256, cols=4, rows=4, overscan=4)
    seconds = {t.index: 0.2 for t in plan}
    seconds[5] = 10.0  # 10x the target: quarters
    seconds[6] = 2.5  # 2.5x the target: halves
    new = replan(plan, seconds, target_s=1.0)
    check_coverage([t.rect for t in new], 256, 256)
    assert new.overscan == 4
    rects = {t.rect.as_tuple() for t in new}
    hot5, hot6 = plan.tiles[5].rect, plan.tiles[6].rect
    assert (
        len(
            [
                r
                for r in rects
                if PixelRect(x0=r[0], y0=r[1], x1=r[2], y1=r[3]).area * 4 == hot5.area
            ]
        )
        >= 4
    )
    assert (hot6.x0, hot6.y0, hot6.x0 + 32, hot6.y1) in rects
    assert (hot6.x0 + 32, hot6.y0, hot6.x1, hot6.y1) in rects
    # Cold tiles (0.2 s each) merge while the sum stays within 1 s: fewer, larger tiles.
    cold_area = sum(t.rect.area for t in new if t.rect.area > 64 * 64)
    assert cold_area > 0
    assert [t.index for t in new] == list(range(len(new)))
    assert replan(plan, seconds, target_s=1.0) == new  # deterministic


def test_replan_keeps_balanced_plan_and_unmeasured_tiles() -> None:
    plan = plan_tiles(128, 128, cols=2, rows=2)
    assert replan(plan, {t.index: 1.0 for t in plan}, target_s=1.0) == plan
    assert replan(plan, {}, target_s=1.0) == plan


def test_replan_respects_min_tile() -> None:
    plan = plan_tiles(40, 40, cols=1, rows=1)
    assert replan(plan, {0: 100.0}, target_s=1.0, min_tile=32) == plan
    assert len(replan(plan, {0: 100.0}, target_s=1.0, min_tile=16)) == 4


def test_replan_rejects_unknown_tiles_and_bad_target() -> None:
    plan = plan_tiles(64, 64, cols=2)
    with pytest.raises(InvalidSpec) as info:
        replan(plan, {7: 1.0}, target_s=1.0)
    assert info.value.field == "tile_seconds"
    with pytest.raises(InvalidSpec):
        replan(plan, {}, target_s=0)


@settings(max_examples=60, deadline=None)
@given(
    grids(),
    st.integers(0, 16),
    st.lists(st.floats(0, 20, allow_nan=False), min_size=1, max_size=40),
    st.floats(0.1, 5),
    st.integers(1, 8),
)
def test_split_and_merge_keep_exact_coverage(
    grid: tuple[int, int, int, int], overscan: int, times: list[float], target: float, min_tile: int
) -> None:
    width, height, cols, rows = grid
    plan = plan_tiles(width, height, cols=cols, rows=rows, overscan=overscan)
    for frame in range(3):  # several frames in a row, as the dispatcher would
        seconds = {t.index: times[(t.index + frame) % len(times)] for t in plan}
        plan = replan(plan, seconds, target_s=target, min_tile=min_tile)
        check_coverage([t.rect for t in plan], width, height)
        assert plan.overscan == overscan
        for t in plan:
            assert t.render_rect == t.rect.expand(overscan, width=width, height=height)
        assert TilePlan.from_json(plan.to_json()) == plan


def test_tile_times_area_weighted_across_plans() -> None:
    times = TileTimes()
    whole = PixelRect(x0=0, y0=0, x1=100, y1=100)
    times.record(whole, 4.0)
    quarters = plan_tiles(100, 100, cols=2, rows=2)
    assert times.seconds_for(quarters) == pytest.approx({0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0})
    # A later frame, measured with the quarter plan, found the top-left quarter expensive.
    times.record(quarters.tiles[0].rect, 3.0)
    est = times.seconds_for(quarters)
    assert est[0] == pytest.approx(2.0)  # mean of 1.0 (whole frame) and 3.0
    assert est[1] == pytest.approx(1.0)


def test_tile_times_skip_unmeasured_and_scale_partial() -> None:
    times = TileTimes()
    times.record(PixelRect(x0=0, y0=0, x1=50, y1=100), 2.0)
    est = times.seconds_for(plan_tiles(100, 100, cols=4))
    assert est == pytest.approx({0: 1.0, 1: 1.0})
    est = times.seconds_for(plan_tiles(100, 100, cols=1))
    assert est == pytest.approx({0: 4.0})  # half measured, scaled to the whole tile


def test_tile_times_feed_replan() -> None:
    plan = plan_tiles(128, 128, cols=2, rows=2)
    times = TileTimes()
    for t in plan:
        times.record(t.rect, 9.0 if t.index == 0 else 0.1)
    new = replan(plan, times.seconds_for(plan), target_s=2.0)
    assert len(new) > 4 - 1
    check_coverage([t.rect for t in new], 128, 128)


def test_merged_tiles_stay_within_target() -> None:
    plan = plan_tiles(256, 256, cols=8, rows=8)
    new = replan(plan, {t.index: 0.1 for t in plan}, target_s=1.0)
    check_coverage([t.rect for t in new], 256, 256)
    cell = plan.tiles[0].rect.area
    assert len(new) < len(plan) // 4
    assert all(t.rect.area // cell * 0.1 <= 1.0 + 1e-9 for t in new)


def test_large_cold_plan_replans_quickly() -> None:
    plan = plan_tiles(3840, 2160, cols=64, rows=36)  # 2,304 tiles
    new = replan(plan, {t.index: 0.01 for t in plan}, target_s=1.0)
    check_coverage([t.rect for t in new], 3840, 2160)
    assert len(new) < 100


def test_dispatch_ranks_sends_slow_tiles_first_and_unmeasured_ones_before_them() -> None:
    plan = plan_tiles(40, 10, cols=4, rows=1)
    ranks = dispatch_ranks(plan, {0: 0.1, 1: 3.0, 3: 3.0})
    # Tile 2 has no estimate: first. Then 1 and 3 (a tie: the one nearer the centre first),
    # then the cheap tile 0.
    assert ranks == [3, 1, 0, 2]


def test_dispatch_ranks_go_centre_out_before_anything_is_measured() -> None:
    grid = plan_tiles(30, 30, cols=3, rows=3)
    ranks = dispatch_ranks(grid, {})
    assert ranks[4] == 0  # the centre tile first
    assert sorted(ranks[i] for i in (1, 3, 5, 7)) == [1, 2, 3, 4]  # then its edge neighbours
    assert sorted(ranks[i] for i in (0, 2, 6, 8)) == [5, 6, 7, 8]  # the corners last
    assert dispatch_ranks(plan_tiles(40, 10, cols=4, rows=1), {}) == [2, 0, 1, 3]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=100), min_size=6, max_size=6))
def test_dispatch_ranks_is_a_permutation_ordered_by_estimate(seconds: list[float]) -> None:
    plan = plan_tiles(60, 10, cols=6, rows=1)
    ranks = dispatch_ranks(plan, dict(enumerate(seconds)))
    assert sorted(ranks) == list(range(6))
    by_rank = sorted(range(6), key=lambda i: ranks[i])
    assert [seconds[i] for i in by_rank] == sorted(seconds, reverse=True)


# ----------------------------------------------------------------------------- balanced plans


def _hot_left_times(width: int, height: int, hot_x: int, hot: float, cold: float) -> TileTimes:
    """A layer whose left ``hot_x`` columns cost ``hot`` s per megapixel and the rest ``cold``."""
    times = TileTimes()
    left = PixelRect(x0=0, y0=0, x1=hot_x, y1=height)
    right = PixelRect(x0=hot_x, y0=0, x1=width, y1=height)
    times.record(left, hot * left.area / 1e6)
    times.record(right, cold * right.area / 1e6)
    return times


@settings(deadline=None)
@given(
    st.integers(min_value=1, max_value=400),
    st.integers(min_value=1, max_value=400),
    st.integers(min_value=1, max_value=40),
    st.integers(min_value=1, max_value=16),
)
def test_balanced_plan_covers_exactly_with_at_most_the_asked_tiles(
    width: int, height: int, parts: int, min_tile: int
) -> None:
    times = _hot_left_times(width + 1, height, width // 2 + 1, hot=9.0, cold=1.0)
    for cost in (None, times.density(width + 1, height)):
        plan = balanced_plan(width + 1, height, parts, cost=cost, min_tile=min_tile, overscan=3)
        check_coverage([t.rect for t in plan], width + 1, height)
        assert 1 <= len(plan) <= parts
        assert plan.overscan == 3


def test_balanced_plan_without_measurements_cuts_equal_areas() -> None:
    plan = balanced_plan(1920, 1080, 4)
    assert len(plan) == 4
    assert {t.rect.area for t in plan} == {1920 * 1080 // 4}


def test_balanced_plan_cuts_where_measured_cost_divides_evenly() -> None:
    # Left quarter costs 9x the rest per pixel: 9 * 480 = 4320 vs 1440 px-units on the right,
    # so half the cost lies left of x = 320 (320 * 9 = 2880 = 160 * 9 + 1440).
    times = _hot_left_times(1920, 1080, 480, hot=9.0, cold=1.0)
    plan = balanced_plan(1920, 1080, 2, cost=times.density(1920, 1080))
    assert [t.rect.as_tuple() for t in plan] == [(0, 0, 320, 1080), (320, 0, 1920, 1080)]
    seconds = times.seconds_for(plan)
    assert seconds[0] == pytest.approx(seconds[1])


def test_balanced_plan_tiles_cost_about_the_same() -> None:
    times = _hot_left_times(1920, 1080, 300, hot=20.0, cold=1.0)
    for parts in (2, 3, 4, 6, 8):
        plan = balanced_plan(1920, 1080, parts, cost=times.density(1920, 1080))
        est = times.seconds_for(plan)
        assert len(plan) == parts
        # Cuts land on whole pixels: within one hot column of the ideal share.
        assert max(est.values()) - min(est.values()) <= 2 * 20.0 * 1080 / 1e6


def test_balanced_plan_fills_unmeasured_cells_with_the_mean_cost() -> None:
    # Only the left half was measured: nothing says the right half is free, so it is not
    # all given to one tile.
    times = TileTimes()
    times.record(PixelRect(x0=0, y0=0, x1=960, y1=1080), 1.0)
    plan = balanced_plan(1920, 1080, 2, cost=times.density(1920, 1080))
    assert [t.rect.as_tuple() for t in plan] == [(0, 0, 960, 1080), (960, 0, 1920, 1080)]


def test_balanced_plan_is_deterministic_and_keeps_min_tile() -> None:
    times = _hot_left_times(200, 100, 10, hot=1000.0, cold=1.0)
    cost = times.density(200, 100)
    a = balanced_plan(200, 100, 8, cost=cost, min_tile=16)
    b = balanced_plan(200, 100, 8, cost=cost, min_tile=16)
    assert a == b
    assert all(t.rect.width >= 16 and t.rect.height >= 16 for t in a)


def test_balanced_plan_rejects_no_tiles() -> None:
    with pytest.raises(InvalidSpec, match="use 1 or more"):
        balanced_plan(10, 10, 0)

"""Planning one frame's tiles from what is known of the cost: measurements, preview, nothing."""

from __future__ import annotations

import numpy as np
import pytest

from farm import schemas
from farm.errors import InvalidSpec
from scheduler.dispatch.frames import frame_plan
from scheduler.tiles import CostMap
from tests.factories import job_spec


def balanced_spec(parts: int) -> tuple[schemas.JobSpec, schemas.LayerSpec]:
    spec = job_spec(1, 1, size=(96, 64), tiles={"balanced": parts, "overscan": 2})
    return spec, spec.layer("render")


def right_third_preview() -> list[list[float]]:
    """All the work in the right third of the frame (x >= 64 of 96)."""
    preview = np.zeros((36, 64))
    preview[:, 43:] = 1.0  # 43 / 64 * 96 = 64.5: cells from about x = 64 on
    return preview.tolist()


def test_a_preview_cuts_the_first_frame_at_equal_cost_and_sends_the_dear_tile_first() -> None:
    spec, layer = balanced_spec(2)
    plan = frame_plan(spec, layer, [], right_third_preview())
    left, right = plan.tiles.tiles
    assert left.rect.x1 > 64  # half the work lies in the right third
    assert plan.estimates == {}  # a preview is not seconds
    assert plan.weights[left.index] == pytest.approx(plan.weights[right.index], rel=0.05)
    skewed = frame_plan(spec, balanced_spec(3)[1], [], right_third_preview())
    ranks = skewed.ranks
    dearest = max(skewed.weights, key=lambda i: skewed.weights[i])
    assert ranks[dearest] == 0


def test_the_frames_own_preview_cuts_and_measurements_give_the_seconds() -> None:
    spec, layer = balanced_spec(2)
    times = [[0, 0, 96, 64, 1.0]]  # measured on an earlier frame: uniform
    plan = frame_plan(spec, layer, times, right_third_preview())
    assert plan.tiles.tiles[0].rect.x1 > 64  # where this frame's particles are
    assert set(plan.estimates) == {0, 1}
    assert sum(plan.estimates.values()) == pytest.approx(1.0)
    dearest = max(plan.estimates, key=lambda i: plan.estimates[i])
    assert plan.ranks[dearest] == 0


def test_without_a_preview_measured_cost_cuts_the_frame() -> None:
    """The left quarter measured 5x dearer per pixel: the cut moves left until costs match."""
    spec, layer = balanced_spec(2)
    # 1 s spread over the frame, plus 4 s more over the left quarter (x < 24).
    times = [[0, 0, 96, 64, 1.0], [0, 0, 24, 64, 1.0 / 4 + 4.0]]
    plan = frame_plan(spec, layer, times, None)
    left, right = plan.tiles.tiles
    assert left.rect.x1 < 24  # the hot quarter alone is worth more than half
    assert (left.rect.y0, left.rect.y1, right.rect.x1) == (0, 64, 96)
    assert plan.estimates[0] == pytest.approx(plan.estimates[1], rel=0.1)


def test_no_preview_and_no_measurement_cut_equal_areas() -> None:
    spec, layer = balanced_spec(2)
    for preview in (None, [], np.zeros((36, 64)).tolist(), [[1.0, -1.0]], "junk"):
        plan = frame_plan(spec, layer, [], preview)  # type: ignore[arg-type]
        assert [t.rect.x1 for t in plan.tiles] == [48, 96], preview


def test_a_grid_layer_orders_its_first_frame_by_the_preview() -> None:
    spec = job_spec(1, 1, size=(96, 64), grid=(3, 1))
    plan = frame_plan(spec, spec.layer("render"), [], right_third_preview())
    assert len(plan.tiles) == 3
    assert plan.ranks[2] == 0  # the right-hand tile holds the work


def test_cost_map_from_grid_rejects_what_cannot_be_a_cost() -> None:
    for bad in (np.zeros(3), np.array([[1.0, np.nan]]), np.array([[-1.0]]), np.zeros((0, 2))):
        with pytest.raises(InvalidSpec, match="cost grid"):
            CostMap.from_grid(96, 64, bad)
    with pytest.raises(InvalidSpec, match="finer than"):
        CostMap.from_grid(4, 4, np.ones((2, 8)))

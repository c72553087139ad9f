"""The particle renderer: tile exactness at any grid, backend agreement and the image model."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from farm.errors import InvalidSpec
from farm.particles import (
    Camera,
    ParticleFrame,
    _model,
    available_backends,
    monster_camera,
    prepare_frame,
    render_frame,
    render_rect,
    render_tiles,
    sea_monster,
    simulate,
)
from farm.vocab import AOV, PixelRect

# Looks down -z from the origin: right is +x, up is +y, so pixel positions are easy to place.
CAM = Camera(position=(0.0, 0.0, 0.0), look_at=(0.0, 0.0, -1.0), near=0.5, far=100.0)
HAS_NUMBA = "numba" in available_backends()


def at_pixels(
    sx: np.ndarray,
    sy: np.ndarray,
    depth: np.ndarray,
    radius_px: np.ndarray,
    *,
    width: int,
    height: int,
    rgba: np.ndarray | None = None,
    ids: np.ndarray | None = None,
    velocity: np.ndarray | None = None,
) -> ParticleFrame:
    """Particles placed by pixel centre, depth and pixel radius under ``CAM``."""
    f = CAM.focal_px(width)
    x = (sx - width / 2.0) * depth / f
    y = -(sy - height / 2.0) * depth / f
    n = len(sx)
    if rgba is None:
        rgba = np.tile([0.8, 0.4, 0.2, 0.7], (n, 1))
    return ParticleFrame(
        frame=1,
        position=np.stack([x, y, -depth], axis=1).astype(np.float32),
        velocity=(np.zeros((n, 3)) if velocity is None else velocity).astype(np.float32),
        radius=(radius_px * depth / f).astype(np.float32),
        colour=np.asarray(rgba, np.float32),
        id=(np.arange(n) if ids is None else ids).astype(np.uint32),
    )


def random_frame(seed: int, n: int, width: int, height: int) -> ParticleFrame:
    """Awkward particles: few distinct depths (ties), centres on pixel edges and corners, huge
    radii, full opacity, some behind the camera or past the far plane."""
    rng = np.random.default_rng(seed)
    sx = rng.uniform(-10, width + 10, n)
    sy = rng.uniform(-10, height + 10, n)
    snap = rng.random(n) < 0.4
    sx[snap] = np.round(sx[snap] * 2) / 2
    sy[snap] = np.round(sy[snap] * 2) / 2
    depth = rng.choice([1.0, 2.0, 2.0, 3.5, 7.0, 120.0, -2.0], n) + (rng.random(n) < 0.3) * 0.25
    radius = rng.choice([0.0, 0.3, 1.0, 2.5, 6.0, float(max(width, height)) * 1.5], n)
    rgba = rng.random((n, 4))
    rgba[rng.random(n) < 0.3, 3] = 1.0
    ids = rng.permutation(10 * n + 1)[:n]
    vel = rng.normal(0, 0.3, (n, 3))
    return at_pixels(sx, sy, depth, radius, width=width, height=height, rgba=rgba, ids=ids,
                     velocity=vel)  # fmt: skip


def grid(width: int, height: int, xs: Sequence[int], ys: Sequence[int]) -> list[PixelRect]:
    """Rects between the cut positions (sorted, unique, inside the frame)."""
    xc = [0, *sorted(set(x for x in xs if 0 < x < width)), width]
    yc = [0, *sorted(set(y for y in ys if 0 < y < height)), height]
    return [
        PixelRect(x0=x0, y0=y0, x1=x1, y1=y1)
        for y0, y1 in itertools.pairwise(yc)
        for x0, x1 in itertools.pairwise(xc)
    ]


def even_grid(width: int, height: int, nx: int, ny: int) -> list[PixelRect]:
    return grid(
        width, height, [width * i // nx for i in range(nx)], [height * j // ny for j in range(ny)]
    )


def assemble(
    tiles: Sequence[dict[str, np.ndarray]], rects: Sequence[PixelRect], width: int, height: int
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for tile, rect in zip(tiles, rects, strict=True):
        for name, arr in tile.items():
            if name not in out:
                out[name] = np.full((height, width), np.nan, arr.dtype) if arr.dtype.kind == "f" \
                    else np.zeros((height, width), arr.dtype)  # fmt: skip
            out[name][rect.y0 : rect.y1, rect.x0 : rect.x1] = arr
    return out


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert np.array_equal(a[name], b[name], equal_nan=True), f"channel {name} differs"


def check_tiling(
    pf: ParticleFrame, camera: Camera, width: int, height: int, rects: list[PixelRect],
    backend: str = "auto",
) -> dict[str, np.ndarray]:  # fmt: skip
    whole = render_frame(pf, camera, width=width, height=height, backend=backend)
    per_rect = [
        render_rect(pf, camera, width=width, height=height, rect=r, backend=backend) for r in rects
    ]
    assert_same(assemble(per_rect, rects, width, height), whole)
    binned = render_tiles(pf, camera, width=width, height=height, rects=rects, backend=backend)
    assert_same(assemble(binned, rects, width, height), whole)
    return whole


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 60),
    width=st.integers(1, 40),
    height=st.integers(1, 30),
    xs=st.lists(st.integers(1, 39), max_size=6),
    ys=st.lists(st.integers(1, 29), max_size=6),
    chunk_size=st.sampled_from([0, 1, 3, 16]),
)
def test_any_grid_assembles_to_the_whole_frame_bit_for_bit(
    seed: int, n: int, width: int, height: int, xs: list[int], ys: list[int], chunk_size: int
) -> None:
    pf = random_frame(seed, n, width, height)
    if chunk_size:
        pf = prepare_frame(pf, chunk_size=chunk_size)
    check_tiling(pf, CAM, width, height, grid(width, height, xs, ys))


@pytest.fixture(scope="module")
def monster() -> ParticleFrame:
    return prepare_frame(simulate(sea_monster(40_000, seed=3), 7), chunk_size=512)


def test_non_dividing_grid_1001x537_in_7x5(monster: ParticleFrame) -> None:
    whole = check_tiling(monster, monster_camera(), 1001, 537, even_grid(1001, 537, 7, 5))
    assert (whole["id"] > 0).mean() > 0.1, "the scene should cover a good part of the frame"


def test_tiles_after_a_camera_move_use_the_new_view_not_a_cached_cull(
    monster: ParticleFrame,
) -> None:
    """Chunk culling is cached per frame and view; the same chunks seen anew must cull anew."""
    rects = even_grid(320, 180, 4, 3)
    check_tiling(monster, monster_camera(), 320, 180, rects)
    moved = monster_camera().model_copy(update={"look_at": (-4.0, 1.5, 0.0)})
    whole = check_tiling(monster, moved, 320, 180, rects)
    unculled = render_frame(dataclasses.replace(monster, chunks=None), moved, width=320, height=180)
    assert_same(whole, unculled)


def test_one_tile_is_the_whole_frame(monster: ParticleFrame) -> None:
    check_tiling(monster, monster_camera(), 160, 90, [PixelRect(x0=0, y0=0, x1=160, y1=90)])


def test_one_pixel_wide_and_tall_tiles(monster: ParticleFrame) -> None:
    check_tiling(monster, monster_camera(), 48, 27, even_grid(48, 27, 48, 1))
    check_tiling(monster, monster_camera(), 48, 27, even_grid(48, 27, 1, 27))


def test_particle_on_a_tile_corner() -> None:
    w, h = 32, 32
    r = np.array([0.0, 0.5, 0.75, 1.0, 3.0])
    pf = at_pixels(np.full(5, 16.0), np.full(5, 16.0), np.arange(1.0, 6.0), r, width=w, height=h)
    whole = check_tiling(pf, CAM, w, h, even_grid(w, h, 4, 4))
    # All four pixels around the corner see the particle: it straddles four tiles.
    assert (whole["id"][15:17, 15:17] > 0).all()


def test_particle_larger_than_a_tile() -> None:
    w, h = 40, 24
    pf = at_pixels(np.array([13.3]), np.array([11.7]), np.array([2.0]), np.array([30.0]),
                   width=w, height=h)  # fmt: skip
    whole = check_tiling(pf, CAM, w, h, even_grid(w, h, 5, 3))
    assert (whole["id"] == 1).sum() > 0.8 * w * h


def test_depth_ties_resolve_by_id_not_storage_order() -> None:
    w, h = 16, 16
    red, blue = [1.0, 0.0, 0.0, 0.6], [0.0, 0.0, 1.0, 0.6]
    args = (np.full(2, 8.0), np.full(2, 8.0), np.full(2, 3.0), np.full(2, 4.0))
    a = at_pixels(*args, width=w, height=h, rgba=np.array([red, blue]), ids=np.array([5, 9]))
    b = at_pixels(*args, width=w, height=h, rgba=np.array([blue, red]), ids=np.array([9, 5]))
    img_a = check_tiling(a, CAM, w, h, even_grid(w, h, 2, 2))
    img_b = render_frame(b, CAM, width=w, height=h)
    assert_same(img_a, img_b)
    assert img_a["id"][8, 8] == 6, "the lower id (5) is in front"
    assert img_a["R"][8, 8] > img_a["B"][8, 8] > 0


def test_render_tiles_equals_render_rect_equals_render_frame_for_each_backend(
    monster: ParticleFrame,
) -> None:
    rects = even_grid(120, 68, 4, 4)
    for backend in available_backends():
        check_tiling(monster, monster_camera(), 120, 68, rects, backend=backend)


def test_numpy_fallback_tiles_exactly() -> None:
    pf = random_frame(11, 50, 37, 23)
    check_tiling(pf, CAM, 37, 23, grid(37, 23, [1, 9, 10, 30], [5, 6, 22]), backend="numpy")


@pytest.mark.skipif(not HAS_NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numba_and_numpy_agree(seed: int, monster: ParticleFrame) -> None:
    cases = [(random_frame(seed, 80, 41, 29), CAM, 41, 29), (monster, monster_camera(), 200, 113)]
    for pf, cam, w, h in cases:
        a = render_frame(pf, cam, width=w, height=h, backend="numba")
        b = render_frame(pf, cam, width=w, height=h, backend="numpy")
        assert np.array_equal(a["id"], b["id"])
        assert np.array_equal(np.isinf(a["Z"]), np.isinf(b["Z"]))
        for name in ("R", "G", "B", "A", "Z", "velocity.X", "velocity.Y"):
            fin = np.isfinite(a[name])
            np.testing.assert_allclose(a[name][fin], b[name][fin], rtol=1e-6, atol=1e-6)


def test_prepare_frame_reorders_but_keeps_the_image(monster: ParticleFrame) -> None:
    raw = simulate(sea_monster(40_000, seed=3), 7)
    assert not np.array_equal(raw.id, monster.id)
    cam = monster_camera()
    assert_same(render_frame(raw, cam, width=160, height=90),
                render_frame(monster, cam, width=160, height=90))  # fmt: skip


def test_image_model_single_particle() -> None:
    w, h = 21, 21
    vel = np.array([[0.3, 0.0, 0.0]])
    pf = at_pixels(np.array([10.5]), np.array([10.5]), np.array([4.0]), np.array([5.0]),
                   width=w, height=h, rgba=np.array([[0.5, 1.0, 0.0, 0.8]]), ids=np.array([41]),
                   velocity=vel)  # fmt: skip
    img = render_frame(pf, CAM, width=w, height=h)
    re2 = 25 + _model.LOWPASS_PX2  # the disc of radius 5 widened by the pixel low-pass
    peak = 0.8 * 25 / re2  # wide enough for the analytic amplitude: deposit / integral
    assert img["A"][10, 10] == pytest.approx(peak)
    assert img["R"][10, 10] == pytest.approx(0.5 * peak) and img["G"][10, 10] == pytest.approx(peak)
    assert img["Z"][10, 10] == pytest.approx(4.0) and img["id"][10, 10] == 42
    f = CAM.focal_px(w)
    assert img["velocity.X"][10, 10] == pytest.approx(f * 0.3 / 4.0, rel=1e-5)
    # (1 - d²/r_e²)² falls to zero at r_e = 5.07: d = 5 is just inside, d = 6 outside.
    assert img["id"][10, 15] == 42 and img["id"][10, 16] == 0
    assert img["A"][10, 14] == pytest.approx(peak * (1 - 16 / re2) ** 2, rel=1e-5)
    assert np.isinf(img["Z"][0, 0]) and img["A"][0, 0] == 0


def deposit(radius_px: float, opacity: float) -> float:
    """The documented total alpha of one particle: ``opacity * pi r² / 3``, ``r >= 0.5 px``."""
    r = max(radius_px, _model.R_MIN_PX)
    return opacity * np.pi * r * r / 3.0


def deposit_tolerance(radius_px: float) -> float:
    """The documented bound on ``|total alpha / deposit - 1|`` (docs/renderer.md): float32
    rounding where the footprint is normalised by its exact pixel sum, the sampling error of the
    analytic integral beyond."""
    re = np.sqrt(max(radius_px, _model.R_MIN_PX) ** 2 + _model.LOWPASS_PX2)
    return 1e-5 if re < _model.EXACT_BELOW_PX - 1e-4 else _model.SAMPLING_ERROR + 1e-5


def splat_one(
    sx: float, sy: float, radius_px: float, opacity: float, size: int, backend: str = "auto"
) -> dict[str, np.ndarray]:
    pf = at_pixels(np.array([sx]), np.array([sy]), np.array([3.0]), np.array([radius_px]),
                   width=size, height=size, rgba=np.array([[0.6, 0.5, 0.4, opacity]]))  # fmt: skip
    return render_frame(pf, CAM, width=size, height=size, backend=backend)


@settings(max_examples=150, deadline=None)
@given(
    radius_px=st.one_of(st.just(0.0), st.floats(0.0, 1.0), st.floats(1.0, 12.0)),
    fx=st.floats(0.0, 1.0, exclude_max=True),
    fy=st.floats(0.0, 1.0, exclude_max=True),
    opacity=st.floats(0.01, 1.0),
)
def test_a_particle_of_any_size_deposits_its_coverage(
    radius_px: float, fx: float, fy: float, opacity: float
) -> None:
    """However small (radius 0 included) and wherever it lands within a pixel, a particle
    inside the frame deposits its coverage, and no pixel gets more than its opacity."""
    size = 2 * int(radius_px) + 12
    centre = size // 2
    img = splat_one(centre + fx, centre + fy, radius_px, opacity, size)
    total = float(img["A"].astype(np.float64).sum())
    assert total == pytest.approx(deposit(radius_px, opacity), rel=deposit_tolerance(radius_px))
    assert img["A"].max() <= opacity * (1 + 1e-6)
    assert ((img["id"] > 0) == (img["A"] > 0)).all(), "every pixel it tints names it"


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize("radius_px", [0.0, 0.3, 0.8, 1.5, 2.2, 2.3, 2.4, 2.6, 4.0, 7.5])
def test_a_moving_particle_deposits_the_same_every_frame(radius_px: float, backend: str) -> None:
    """A particle drifting by sub-pixel steps never twinkles: its total alpha moves by less
    than the documented bound from one frame to the next (float32 rounding alone for
    footprints narrower than 2.5 px)."""
    size = 2 * int(radius_px) + 16
    steps = np.arange(40) * 0.137
    totals = np.array([
        splat_one(6 + s, 6 + 0.61 * s, radius_px, 0.9, size, backend)["A"].astype(np.float64).sum()
        for s in steps
    ])  # fmt: skip
    assert (totals > 0).all()
    change = np.abs(np.diff(totals)) / totals[:-1]
    assert change.max() <= 2 * deposit_tolerance(radius_px)


def test_a_distant_particle_of_radius_zero_shows() -> None:
    """The reported case: a 1024 px focal length, radius 0, projected to (20.9, 15.9) in a
    40x30 frame used to render nothing at all."""
    cam = Camera(position=(0.0, 0.0, 0.0), look_at=(0.0, 0.0, -1.0), near=0.5, far=1000.0,
                 focal_length_mm=1024 * 36 / 40, sensor_width_mm=36.0)  # fmt: skip
    assert cam.focal_px(40) == pytest.approx(1024)
    depth = 500.0
    x, y = (20.9 - 20) * depth / 1024, -(15.9 - 15) * depth / 1024
    pf = ParticleFrame(
        frame=1,
        position=np.array([[x, y, -depth]], np.float32),
        velocity=np.zeros((1, 3), np.float32),
        radius=np.zeros(1, np.float32),
        colour=np.array([[1.0, 1.0, 1.0, 1.0]], np.float32),
        id=np.array([7], np.uint32),
    )
    for backend in available_backends():
        img = render_frame(pf, cam, width=40, height=30, backend=backend)
        assert img["id"][15, 20] == 8
        assert img["A"].astype(np.float64).sum() == pytest.approx(np.pi / 12, rel=1e-5)


def tiny_frame(seed: int, n: int, width: int, height: int) -> ParticleFrame:
    """Sub-pixel particles (radius 0 to 1.5 px, a third exactly 0) anywhere in and just
    outside the frame, on pixel centres, edges and corners, at tied depths."""
    rng = np.random.default_rng(seed)
    sx = rng.uniform(-3, width + 3, n)
    sy = rng.uniform(-3, height + 3, n)
    snap = rng.random(n) < 0.5
    sx[snap] = np.round(sx[snap] * 2) / 2
    sy[snap] = np.round(sy[snap] * 2) / 2
    radius = np.where(rng.random(n) < 0.35, 0.0, rng.uniform(0, 1.5, n))
    depth = rng.choice([1.0, 1.5, 1.5, 4.0], n)
    rgba = rng.random((n, 4))
    ids = rng.permutation(4 * n + 1)[:n]
    return at_pixels(sx, sy, depth, radius, width=width, height=height, rgba=rgba, ids=ids,
                     velocity=rng.normal(0, 0.2, (n, 3)))  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 120),
    width=st.integers(1, 40),
    height=st.integers(1, 30),
    xs=st.lists(st.integers(1, 39), max_size=6),
    ys=st.lists(st.integers(1, 29), max_size=6),
    chunk_size=st.sampled_from([0, 1, 5, 32]),
)
def test_tiny_and_zero_radius_particles_tile_bit_for_bit(
    seed: int, n: int, width: int, height: int, xs: list[int], ys: list[int], chunk_size: int
) -> None:
    """The widened footprint of sub-pixel particles reaches into neighbouring tiles; each tile
    (and each chunk cull) must take it, and every channel must still assemble exactly."""
    pf = tiny_frame(seed, n, width, height)
    if chunk_size:
        pf = prepare_frame(pf, chunk_size=chunk_size)
    check_tiling(pf, CAM, width, height, grid(width, height, xs, ys))


def test_tiny_particles_tile_exactly_with_the_numpy_fallback() -> None:
    pf = prepare_frame(tiny_frame(4, 300, 37, 23), chunk_size=7)
    check_tiling(pf, CAM, 37, 23, grid(37, 23, [1, 8, 16, 30], [3, 11, 22]), backend="numpy")


@pytest.mark.skipif(not HAS_NUMBA, reason="numba is not installed")
def test_kernel_cache_follows_the_image_model() -> None:
    """numba's on-disk cache notices only ``_kernels.py`` changing; the model it compiles in
    lives in ``_model.py``, whose digest ``_kernels.py`` records (update it with the model)."""
    import hashlib
    from pathlib import Path

    from farm.particles import _kernels

    source = Path(_model.__file__).read_bytes()
    assert hashlib.sha256(source).hexdigest() == _kernels.MODEL_DIGEST, (
        "farm/particles/_model.py changed: set _kernels.MODEL_DIGEST to its new sha256"
    )


@pytest.mark.skipif(not HAS_NUMBA, reason="numba is not installed")
def test_a_tiles_working_memory_follows_its_own_particles() -> None:
    """Each of 16 tiles peaks at under a third of the whole frame's working memory: records
    are made for the particles a tile draws, not for every particle of the chunks it touches.
    (The numpy fallback expands fragments in bands of a fixed budget, so its tiles do not.)"""
    import tracemalloc

    pf = prepare_frame(sea_monster(120_000, seed=5))
    cam = monster_camera()
    w, h = 640, 360

    def peak(rect: PixelRect) -> int:
        tracemalloc.start()
        try:
            render_rect(pf, cam, width=w, height=h, rect=rect)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    render_frame(pf, cam, width=w, height=h)  # compile, and fill the chunk-hull cache
    whole = peak(PixelRect(x0=0, y0=0, x1=w, y1=h))
    tiles = [peak(r) for r in even_grid(w, h, 4, 4)]
    assert max(tiles) <= whole / 3, (max(tiles), whole)


def test_channels_follow_the_requested_aovs() -> None:
    pf = random_frame(5, 10, 12, 8)
    img = render_frame(pf, CAM, width=12, height=8, aovs=[AOV.Z, AOV.ID])
    assert list(img) == ["Z", "id"]
    full = render_frame(pf, CAM, width=12, height=8)
    assert list(full) == ["R", "G", "B", "A", "Z", "id", "velocity.X", "velocity.Y"]
    for name, arr in full.items():
        assert arr.shape == (8, 12) and arr.flags.c_contiguous, name
        assert arr.dtype == (np.uint32 if name == "id" else np.float32)


def test_near_and_far_planes_drop_particles() -> None:
    cam = Camera(position=(0.0, 0.0, 0.0), look_at=(0.0, 0.0, -1.0), near=2.0, far=5.0)
    pf = at_pixels(np.full(3, 4.5), np.full(3, 4.5), np.array([1.0, 3.0, 6.0]), np.full(3, 2.0),
                   width=9, height=9)  # fmt: skip
    img = render_frame(pf, cam, width=9, height=9)
    assert img["id"][4, 4] == 2 and img["Z"][4, 4] == pytest.approx(3.0)


@pytest.mark.parametrize("backend", ["auto", "numpy"])
def test_a_particle_on_the_cameras_plane_is_culled_not_a_crash(backend: str) -> None:
    """Depth exactly 0 (a sim's particle passing through the camera) once raised
    ZeroDivisionError in the compiled kernels, failing the tile with a stack trace."""
    kept = at_pixels(np.array([4.5]), np.array([4.5]), np.array([3.0]), np.array([2.0]),
                     width=9, height=9)  # fmt: skip
    on_plane = np.array([[0.0, 0.0, 0.0], [1.0, 0.5, 0.0]], np.float32)  # at and beside it
    pf = dataclasses.replace(
        kept,
        position=np.concatenate([kept.position, on_plane]),
        velocity=np.zeros((3, 3), np.float32),
        radius=np.full(3, kept.radius[0], np.float32),
        colour=np.repeat(kept.colour, 3, axis=0),
        id=np.arange(3, dtype=np.uint32),
    )
    img = render_frame(pf, CAM, width=9, height=9, backend=backend)
    assert_same(img, render_frame(kept, CAM, width=9, height=9, backend=backend))
    rects = even_grid(9, 9, 3, 3)
    tiles = render_tiles(pf, CAM, width=9, height=9, rects=rects, backend=backend)
    assert_same(assemble(tiles, rects, 9, 9), img)


def test_bad_input_raises_invalid_spec_and_never_crashes() -> None:
    pf = random_frame(1, 10, 8, 8)
    short = ParticleFrame(1, pf.position[:5], pf.velocity, pf.radius, pf.colour, pf.id)
    with pytest.raises(InvalidSpec) as err:
        render_frame(short, CAM, width=8, height=8)
    assert err.value.field == "position"
    with pytest.raises(InvalidSpec) as err:
        render_frame(pf, CAM, width=8, height=8, backend="cuda")
    assert err.value.field == "backend"
    with pytest.raises(InvalidSpec) as err:
        render_rect(pf, CAM, width=8, height=8, rect=PixelRect(x0=0, y0=0, x1=9, y1=8))
    assert err.value.field == "rect"
    nan = pf.position.copy()
    nan[3] = np.nan
    bad = ParticleFrame(1, nan, pf.velocity, -pf.radius, pf.colour, pf.id)
    for backend in available_backends():
        img = render_frame(bad, CAM, width=8, height=8, backend=backend)
        assert img["R"].shape == (8, 8)


def test_cost_preview_puts_the_work_where_the_particles_land() -> None:
    from farm.particles.render import cost_preview
    from tests.factories import small_camera, small_frame

    pf = small_frame(2000)
    left = dataclasses.replace(pf, position=pf.position * np.float32(0.3) - [1.0, 0, 0])
    grid = cost_preview(left, small_camera(), width=96, height=64, cells=(8, 4))
    assert grid.shape == (4, 8)
    assert grid[:, :4].sum() > 0 and grid[:, 4:].sum() == 0
    # Every particle in view counts at least once: 1 + (2 r)^2 per particle.
    assert grid.sum() >= 2000
    behind = dataclasses.replace(pf, position=pf.position + np.float32([0, 0, 10]))
    assert cost_preview(behind, small_camera(), width=96, height=64).sum() == 0
    with pytest.raises(InvalidSpec, match="preview grid"):
        cost_preview(pf, small_camera(), width=96, height=64, cells=(0, 4))


def test_cost_preview_samples_a_large_frame_and_keeps_its_scale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from farm.particles import render
    from tests.factories import small_camera, small_frame

    pf = small_frame(4000)
    full = render.cost_preview(pf, small_camera(), width=96, height=64, cells=(4, 2))
    monkeypatch.setattr(render, "PREVIEW_SAMPLES", 1000)  # every 4th particle, weighted 4x
    sampled = render.cost_preview(pf, small_camera(), width=96, height=64, cells=(4, 2))
    assert sampled.sum() == pytest.approx(full.sum(), rel=0.15)


@pytest.mark.skipif(not HAS_NUMBA, reason="numba is not installed")
def test_a_refused_prefetch_costs_only_the_prefetch() -> None:
    """If a future LLVM refuses the prefetch intrinsic, the raster gets a no-op stand-in
    instead of failing to compile (which would drop the whole renderer to numpy)."""
    from farm.particles import _kernels

    def refused(rows: np.ndarray) -> None:
        raise RuntimeError("Invalid intrinsic name llvm.prefetch.p0i8")

    assert _kernels.usable_prefetch(refused) is _kernels._no_prefetch
    assert _kernels.usable_prefetch() is _kernels._prefetch  # this machine's LLVM takes it
    _kernels._no_prefetch(np.zeros((2, 8), np.float32), 1)  # compiles, does nothing


@pytest.mark.skipif(not HAS_NUMBA, reason="numba is not installed")
@pytest.mark.parametrize(
    ("near", "far", "region"),
    [
        (0.1, 1000.0, (0, 0, 320, 180)),  # the whole frame: most chunks lie wholly inside
        (0.1, 1000.0, (40, 20, 300, 170)),  # a part of it: chunks cross its edges
        (43.0, 46.0, (0, 0, 320, 180)),  # near and far planes cut through the scene
    ],
)
def test_chunks_wholly_inside_the_region_cull_by_opacity_alone_with_the_same_result(
    monster: ParticleFrame, near: float, far: float, region: tuple[int, int, int, int]
) -> None:
    """A chunk whose every particle lies inside the region and the depth range skips the
    per-particle projection in the cull (``_chunk_ranges``' ``inside``); it must keep exactly
    the particles the full per-particle rule keeps, transparent ones dropped."""
    from farm.particles import _kernels
    from farm.particles.render import _arrays, _chunk_ranges

    colour = monster.colour.copy()
    colour[::7, 3] = 0.0  # transparent particles inside wholly-inside chunks too
    pf = dataclasses.replace(monster, colour=colour)
    cam = monster_camera().model_copy(update={"near": near, "far": far})
    params = cam.projection_params(320, 180)
    starts, ends, inside = _chunk_ranges(pf, params, region)
    arrs = _arrays(pf)
    room = int((ends - starts).sum()) + starts.size + 1

    def cull(flags: np.ndarray) -> tuple[int, int, np.ndarray, np.ndarray]:
        rs, re_ = np.empty(room, np.int64), np.empty(room, np.int64)
        runs, m = _kernels.cull(arrs["position"], arrs["radius"], arrs["colour"], starts, ends,
                                flags, params, *region, rs, re_)  # fmt: skip
        return runs, m, rs[:runs], re_[:runs]

    fast, full = cull(inside), cull(np.zeros_like(inside))
    assert fast[:2] == full[:2] and fast[1] > 0
    assert np.array_equal(fast[2], full[2]) and np.array_equal(fast[3], full[3])
    if region == (0, 0, 320, 180) and far > 100:
        inside_n = int((ends - starts)[inside].sum())
        assert inside_n > 0.3 * pf.count, "most of the whole frame's chunks should lie inside"
    whole = render_frame(pf, cam, width=320, height=180)
    assert_same(
        whole, render_frame(dataclasses.replace(pf, chunks=None), cam, width=320, height=180)
    )


def test_a_4x4_grid_of_tiles_culls_little_more_than_the_frames_particles() -> None:
    """Each tile culls, one by one, every particle of the chunks its rect may touch: with chunks
    of 4,096 the 16 tiles of a 960x540 frame of 200,000 particles culled 3.9 times the frame's
    particles between them; the default chunks keep it under 3 (2.5)."""
    from farm.particles.render import _chunk_ranges

    params = monster_camera().projection_params(960, 540)

    def culled(pf: ParticleFrame) -> int:
        """Particles the 16 tiles cull between them."""
        total = 0
        for rect in even_grid(960, 540, 4, 4):
            starts, ends, _ = _chunk_ranges(pf, params, (rect.x0, rect.y0, rect.x1, rect.y1))
            total += int((ends - starts).sum())
        return total

    scene = sea_monster(200_000)
    fine = culled(prepare_frame(scene))
    assert fine < 3.0 * scene.count, fine / scene.count
    assert culled(prepare_frame(scene, chunk_size=4096)) > fine  # the old chunking broke it

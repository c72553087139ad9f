"""Particle frames and cache files: validation messages, the file round trip, the demo scene."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from farm.errors import InvalidSpec
from farm.particles import (
    Camera,
    ParticleFrame,
    prepare_frame,
    read_cache,
    sea_monster,
    simulate,
    validate_cache,
    validate_frame,
    write_cache,
)


def small(n: int = 2000, frame: int = 3) -> ParticleFrame:
    rng = np.random.default_rng(frame)
    return ParticleFrame(
        frame=frame,
        position=rng.normal(0, 5, (n, 3)).astype(np.float32),
        velocity=rng.normal(0, 0.1, (n, 3)).astype(np.float32),
        radius=rng.uniform(0, 0.2, n).astype(np.float32),
        colour=rng.random((n, 4)).astype(np.float32),
        id=rng.permutation(n).astype(np.uint32),
    )


def test_valid_frame_passes() -> None:
    validate_frame(small())
    validate_frame(ParticleFrame(1, *(np.zeros((0, k), np.float32) for k in (3, 3)),
                                 np.zeros(0, np.float32), np.zeros((0, 4), np.float32),
                                 np.zeros(0, np.uint32)))  # fmt: skip


def test_nan_position_names_field_and_first_bad_index() -> None:
    pf = small()
    pos = pf.position.copy()
    pos[1207, 2] = np.nan
    pos[1500, 0] = np.nan
    with pytest.raises(InvalidSpec) as err:
        validate_frame(replace(pf, position=pos))
    assert err.value.field == "position"
    assert str(err.value) == (
        "particle cache frame 3: position[1207] is NaN; every position must be finite"
    )


@pytest.mark.parametrize(
    ("field", "mutate", "message"),
    [
        ("velocity", lambda a: a.__setitem__((11, 1), np.inf), "velocity[11] is infinite"),
        (
            "radius",
            lambda a: a.__setitem__(42, -0.5),
            "radius[42] is -0.5; every radius must be >= 0",
        ),
        ("colour", lambda a: a.__setitem__((7, 3), 1.5), "colour[7] has opacity 1.5"),
        ("colour", lambda a: a.__setitem__((8, 0), -1.0), "colour[8] has negative RGB"),
        ("id", lambda a: a.__setitem__(99, a[5]), "id[99] ="),
        ("id", lambda a: a.__setitem__(3, 0xFFFFFFFF), "id[3] is 0xFFFFFFFF, which is reserved"),
    ],
)
def test_bad_values_name_field_and_index(field: str, mutate: object, message: str) -> None:
    pf = small()
    arr = getattr(pf, field).copy()
    mutate(arr)  # type: ignore[operator]
    with pytest.raises(InvalidSpec) as err:
        validate_frame(replace(pf, **{field: arr}))
    assert err.value.field == field
    assert message in str(err.value)


def test_arrays_of_different_lengths_name_both_fields() -> None:
    pf = small()
    with pytest.raises(InvalidSpec) as err:
        validate_frame(replace(pf, radius=pf.radius[:-1]))
    assert err.value.field == "radius"
    assert "radius has 1999 rows but id has 2000" in str(err.value)


def test_wrong_dtype_and_shape() -> None:
    pf = small()
    with pytest.raises(InvalidSpec, match="position has dtype float64"):
        validate_frame(replace(pf, position=pf.position.astype(np.float64)))
    with pytest.raises(InvalidSpec, match=r"colour has shape \(2000, 3\)"):
        validate_frame(replace(pf, colour=pf.colour[:, :3]))


def test_write_read_round_trip_is_memory_mapped(tmp_path: Path) -> None:
    frames = [prepare_frame(small(frame=f), chunk_size=300) if f % 2 else small(frame=f)
              for f in range(1, 9)]  # fmt: skip
    path = tmp_path / "sim.pcache"
    write_cache(path, iter(frames))
    cache = read_cache(path)
    assert cache.frames == tuple(range(1, 9))
    for pf in frames:
        got = cache.frame(pf.frame)
        assert isinstance(got.position, np.memmap) and not got.position.flags.writeable
        for name in ("position", "velocity", "radius", "colour", "id"):
            assert np.array_equal(getattr(got, name), getattr(pf, name))
            assert getattr(got, name).dtype == getattr(pf, name).dtype
        assert (got.chunks is None) == (pf.chunks is None)
        if pf.chunks is not None and got.chunks is not None:
            assert got.chunks.chunk_size == 300
            assert np.array_equal(got.chunks.lo, pf.chunks.lo)
            assert np.array_equal(got.chunks.max_radius, pf.chunks.max_radius)
    validate_cache(cache, range(1, 9))


def test_missing_frame_lists_what_the_cache_holds(tmp_path: Path) -> None:
    path = tmp_path / "sim.pcache"
    write_cache(path, (small(100, f) for f in (1, 2, 3, 4, 5, 6, 7, 8, 12)))
    cache = read_cache(path)
    with pytest.raises(InvalidSpec) as err:
        cache.frame(9)
    assert err.value.field == "frame"
    assert str(err.value) == "particle cache has no frame 9; it holds 1-8, 12"
    with pytest.raises(InvalidSpec, match="no frame 9"):
        validate_cache(cache, range(1, 13))


def test_truncated_or_foreign_files_are_invalid(tmp_path: Path) -> None:
    path = tmp_path / "sim.pcache"
    write_cache(path, [small(100, 1)])
    data = path.read_bytes()
    (tmp_path / "cut").write_bytes(data[: len(data) // 2])
    (tmp_path / "other").write_bytes(b"P6\n" + b"\0" * 200)
    for name in ("cut", "other", "absent"):
        with pytest.raises(InvalidSpec):
            read_cache(tmp_path / name)


def test_prepare_frame_keeps_particles_and_bounds_chunks() -> None:
    pf = small(5000)
    pp = prepare_frame(pf, chunk_size=700)
    validate_frame(pp)
    assert sorted(pp.id.tolist()) == sorted(pf.id.tolist())
    assert pp.chunks is not None and pp.chunks.count == 8
    for c in range(pp.chunks.count):
        sl = slice(c * 700, (c + 1) * 700)
        assert (pp.position[sl] >= pp.chunks.lo[c]).all()
        assert (pp.position[sl] <= pp.chunks.hi[c]).all()
        assert pp.radius[sl].max() == pp.chunks.max_radius[c]


def _morton_reference(position: np.ndarray) -> np.ndarray:
    """The codes bit by bit, as prepare_frame first computed them (30 shifts per particle)."""
    pos = np.nan_to_num(position.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo = pos.min(axis=0)
    span = np.maximum(pos.max(axis=0) - lo, 1e-30)
    q = np.clip(((pos - lo) / span * 1023.0).astype(np.int64), 0, 1023).astype(np.uint64)
    code = np.zeros(pos.shape[0], dtype=np.uint64)
    for bit in range(10):
        for axis in range(3):
            code |= ((q[:, axis] >> np.uint64(bit)) & np.uint64(1)) << np.uint64(3 * bit + axis)
    return code


def test_prepare_frame_orders_along_the_morton_curve_stably() -> None:
    """The fast codes and the two-pass radix order give exactly the bit-by-bit codes' stable
    sort: ties (particles in one cell) keep their input order."""
    from farm.particles.cache import _morton_codes, _stable_order

    rng = np.random.default_rng(11)
    position = rng.normal(0, 5, (20_000, 3)).astype(np.float32)
    position[::7] = position[3]  # many particles in one cell
    position[5, 0] = np.nan  # tolerated here (validation names it elsewhere)
    position[6, 1] = -np.inf
    reference = _morton_reference(position)
    assert np.array_equal(_morton_codes(position), reference)
    assert np.array_equal(
        _stable_order(_morton_codes(position)), np.argsort(reference, kind="stable")
    )
    pf = replace(small(20_000), position=np.nan_to_num(position, nan=0.0, neginf=0.0))
    order = np.argsort(_morton_reference(pf.position), kind="stable")
    prepared = prepare_frame(pf)
    for name in ("position", "velocity", "radius", "colour", "id"):
        got = getattr(prepared, name)
        assert type(got) is np.ndarray and got.flags.c_contiguous, name
        assert np.array_equal(got, getattr(pf, name)[order]), name


@pytest.mark.parametrize("biggest", [10, 2**31])
def test_a_repeated_id_is_found_whatever_the_ids_range(biggest: int) -> None:
    """Ids up to a few times the count are counted, larger ones sorted: both name the later
    of the two rows."""
    pf = small(1000)
    ids = pf.id.copy()
    ids[0] = biggest + 1000
    ids[700] = ids[0]
    with pytest.raises(InvalidSpec, match=r"id\[700\] = .* repeats an earlier id"):
        validate_frame(replace(pf, id=ids))
    ids[700] = biggest + 1001
    validate_frame(replace(pf, id=ids))


def test_prepare_frame_of_a_memory_mapped_frame_gives_plain_arrays(tmp_path: Path) -> None:
    write_cache(tmp_path / "a.dpc", [small(500)])
    mapped = read_cache(tmp_path / "a.dpc").frame(3)
    prepared = prepare_frame(mapped)
    assert all(
        type(getattr(prepared, name)) is np.ndarray
        for name in ("position", "velocity", "radius", "colour", "id")
    )


def test_sea_monster_is_valid_and_simulation_is_closed_form() -> None:
    seed = sea_monster(20_000, seed=1)
    validate_frame(seed)
    assert np.array_equal(seed.id, np.arange(20_000))
    f5 = simulate(seed, 5)
    f6 = simulate(seed, 6)
    validate_frame(f5)
    np.testing.assert_allclose(f5.position + f5.velocity, f6.position, atol=1e-4)
    # Independent of particle order, and deterministic.
    shuffled = prepare_frame(seed)
    g5 = simulate(shuffled, 5)
    order = np.argsort(g5.id)
    np.testing.assert_array_equal(g5.position[order], f5.position)
    assert np.array_equal(simulate(seed, 5).position, f5.position)


def test_camera_is_a_strict_frozen_spec() -> None:
    cam = Camera(position=(0, 1, 5), look_at=(0, 1, 0))
    assert Camera.model_validate_json(cam.model_dump_json()) == cam
    with pytest.raises(ValidationError):
        Camera(position=(0, 0, 0), look_at=(0, 0, 0))
    with pytest.raises(ValidationError):
        Camera(position=(0, 0, 0), look_at=(0, 5, 0))  # up parallel to the view
    with pytest.raises(ValidationError):
        Camera.model_validate({"position": (0, 0, 1), "look_at": (0, 0, 0), "fov": 40})
    with pytest.raises(ValidationError):
        Camera(position=(0, 0, 1), look_at=(0, 0, 0), near=5.0, far=1.0)


def test_farm_seed_writes_a_seed_cache_a_sim_can_start_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from farm.particles.cache import read_cache
    from farm.particles.monster import sea_monster
    from studio_client.cli import main

    out = tmp_path / "monster.dpc"
    assert main(["seed", str(out), "--particles", "500", "--seed", "3"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert f"farm upload {out} --show SHOW --asset NAME --kind particle_seed --publish" in said
    cache = read_cache(out)
    frame = cache.frame(cache.frames[0])
    expected = sea_monster(500, seed=3)
    assert frame.count == 500 and frame.frame == expected.frame
    np.testing.assert_array_equal(frame.position, expected.position)
    assert [p.name for p in tmp_path.iterdir()] == ["monster.dpc"]  # no temp file left
    assert main(["seed", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["seed", str(tmp_path / "no" / "such.dpc")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: folder {tmp_path / 'no'} does not exist: make it first"
    ]

"""OpenEXR layer: real files in tmp_path, read back with the OpenEXR bindings themselves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import OpenEXR
import pytest
from PIL import Image

from farm.errors import InvalidSpec
from farm.exr import (
    CHANNEL_DTYPES,
    TileCorrupt,
    assemble_files,
    assemble_frame,
    check_frame_file,
    check_frames,
    contact_sheet,
    linear_to_srgb8,
    preview_png,
    read_exr,
    read_tile,
    write_exr,
    write_tile,
)
from farm.exr import io as exr_io
from farm.vocab import Compression, ExrLayout, PixelRect
from scheduler.tiles import PlannedTile, TilePlan, plan_tiles

ALL = ("R", "G", "B", "A", "Z", "velocity.X", "velocity.Y", "id")


def frame(width: int, height: int, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Smooth gradients plus noise, in float64/int64 so that write_exr must cast."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    out = {
        "R": xx / width + 0.01 * rng.random((height, width)),
        "G": yy / height,
        "B": 0.5 + 0.1 * np.sin(xx / 7.0),
        "A": np.ones((height, width)),
        "Z": 10.0 + yy * 0.25 + rng.random((height, width)),
        "velocity.X": np.cos(yy / 5.0),
        "velocity.Y": rng.normal(size=(height, width)),
        "id": (xx + yy * width).astype(np.int64),
    }
    return out


def raw_read(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    with OpenEXR.File(str(path), separate_channels=True) as f:
        return dict(f.header()), {k: v.pixels.copy() for k, v in f.channels().items()}


def test_channels_types_and_windows(tmp_path: Path) -> None:
    path = tmp_path / "f.exr"
    write_exr(path, frame(40, 30), width=40, height=30)
    header, pixels = raw_read(path)
    assert set(pixels) == set(ALL)
    for name, arr in pixels.items():
        assert arr.dtype == CHANNEL_DTYPES[name], name
        assert arr.shape == (30, 40)
    assert [tuple(v) for v in header["dataWindow"]] == [(0, 0), (39, 29)]
    assert [tuple(v) for v in header["displayWindow"]] == [(0, 0), (39, 29)]
    assert header["compression"] == OpenEXR.ZIP_COMPRESSION
    assert header["type"] == OpenEXR.scanlineimage
    np.testing.assert_array_equal(pixels["id"], frame(40, 30)["id"])


def test_the_zip_level_trades_size_for_time_and_the_pixels_stay_exact(tmp_path: Path) -> None:
    import ctypes

    from farm.particles.cache import prepare_frame
    from farm.particles.monster import monster_camera, sea_monster
    from farm.particles.render import render_frame

    # A rendered frame: zlib's levels order sizes on real images, not on arbitrary noise.
    pixels = render_frame(
        prepare_frame(sea_monster(20_000)), monster_camera(), width=320, height=180
    )
    lib = ctypes.CDLL(OpenEXR.__file__)
    before, after = ctypes.c_int(0), ctypes.c_int(0)
    lib.exr_get_default_zip_compression_level(ctypes.byref(before))
    sizes = {}
    for level in (1, 6, None):
        path = tmp_path / f"level-{level}.exr"
        write_exr(path, pixels, width=320, height=180, zip_level=level)
        sizes[level] = path.stat().st_size
        _, back = raw_read(path)
        for name, arr in back.items():
            np.testing.assert_array_equal(arr, pixels[name].astype(arr.dtype), err_msg=name)
    assert sizes[1] > sizes[None] > sizes[6]  # OpenEXR's own default (4) lies between
    # The level is OpenEXR's process-wide default: it is put back after each write.
    lib.exr_get_default_zip_compression_level(ctypes.byref(after))
    assert after.value == before.value
    with pytest.raises(InvalidSpec, match="zip level 0"):
        write_exr(tmp_path / "bad.exr", pixels, width=320, height=180, zip_level=0)
    assert not (tmp_path / "bad.exr").exists()


def test_data_window_crop(tmp_path: Path) -> None:
    path = tmp_path / "crop.exr"
    rect = PixelRect(x0=5, y0=7, x1=25, y1=17)
    write_exr(path, frame(20, 10), width=40, height=30, data_window=rect)
    header, _ = raw_read(path)
    assert [tuple(v) for v in header["dataWindow"]] == [(5, 7), (24, 16)]
    assert [tuple(v) for v in header["displayWindow"]] == [(0, 0), (39, 29)]
    image = read_exr(path)
    assert image.data_window == rect
    assert (image.width, image.height) == (40, 30)
    assert image.channels["R"].shape == (10, 20)


@pytest.mark.parametrize(
    ("compression", "layout", "exr_compression", "exr_type"),
    [
        (Compression.ZIP, ExrLayout.SCANLINE, OpenEXR.ZIP_COMPRESSION, OpenEXR.scanlineimage),
        (Compression.PIZ, ExrLayout.SCANLINE, OpenEXR.PIZ_COMPRESSION, OpenEXR.scanlineimage),
        (Compression.ZIP, ExrLayout.TILED, OpenEXR.ZIP_COMPRESSION, OpenEXR.tiledimage),
        (Compression.DWAA, ExrLayout.SCANLINE, OpenEXR.DWAA_COMPRESSION, OpenEXR.scanlineimage),
        (Compression.NONE, ExrLayout.TILED, OpenEXR.NO_COMPRESSION, OpenEXR.tiledimage),
    ],
)
def test_compression_and_layout_options_are_readable(
    tmp_path: Path,
    compression: Compression,
    layout: ExrLayout,
    exr_compression: object,
    exr_type: object,
) -> None:
    path = tmp_path / f"{compression}-{layout}.exr"
    data = frame(70, 50)
    write_exr(path, data, width=70, height=50, compression=compression, layout=layout, tile_size=32)
    header, pixels = raw_read(path)
    assert header["compression"] == exr_compression
    assert header["type"] == exr_type
    image = read_exr(path)
    assert image.compression == compression.value
    assert image.layout == layout
    if compression is not Compression.DWAA:  # DWAA is lossy on half colour
        np.testing.assert_array_equal(pixels["R"], data["R"].astype(np.float16))
    np.testing.assert_array_equal(pixels["Z"], data["Z"].astype(np.float32))  # FLOAT stays lossless
    np.testing.assert_array_equal(image.channels["id"], data["id"].astype(np.uint32))


def test_header_attributes_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "a.exr"
    plan = plan_tiles(16, 8, cols=2, overscan=2)
    attrs: dict[str, str | int | float] = {
        "job": "job-42",
        "delta/layer": "beauty",
        "frame": 1001,
        "delta/pixel_ratio": 1.5,
        "tile_plan": json.dumps(plan.to_json()),
    }
    write_exr(path, frame(16, 8), width=16, height=8, attributes=attrs)
    header, _ = raw_read(path)
    assert header["delta/job"] == "job-42"
    assert header["delta/layer"] == "beauty"
    assert header["delta/frame"] == 1001
    assert header["delta/pixel_ratio"] == 1.5
    image = read_exr(path)
    assert image.attributes["delta/job"] == "job-42"
    assert TilePlan.from_json(json.loads(str(image.attributes["delta/tile_plan"]))) == plan


def test_attribute_that_would_be_silently_zeroed_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec, match="32 bits") as info:
        write_exr(tmp_path / "x.exr", frame(4, 4), width=4, height=4, attributes={"n": 2**40})
    assert info.value.field == "attributes"
    assert list(tmp_path.iterdir()) == []


def test_bad_channel_leaves_no_file(tmp_path: Path) -> None:
    bad = frame(8, 8)
    bad["extra"] = np.zeros((8, 8), dtype=np.float64)
    with pytest.raises(InvalidSpec, match="extra"):
        write_exr(tmp_path / "x.exr", bad, width=8, height=8)
    wrong_shape = frame(8, 8)
    wrong_shape["R"] = np.zeros((8, 9))
    with pytest.raises(InvalidSpec, match="shape"):
        write_exr(tmp_path / "x.exr", wrong_shape, width=8, height=8)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_temp_file_and_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.exr"
    write_exr(path, frame(8, 8), width=8, height=8, attributes={"version": 1})

    class HalfWritingFile:
        def __init__(self, header: dict, channels: dict) -> None:
            pass

        def write(self, target: str) -> None:
            Path(target).write_bytes(b"v/1\x01half a file")
            raise RuntimeError("disk full")

    monkeypatch.setattr(exr_io.OpenEXR, "File", HalfWritingFile)
    with pytest.raises(RuntimeError, match="disk full"):
        write_exr(path, frame(8, 8), width=8, height=8, attributes={"version": 2})
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["f.exr"]
    assert read_exr(path).attributes["delta/version"] == 1


def test_channels_survive_leaving_the_file(tmp_path: Path) -> None:
    path = tmp_path / "f.exr"
    data = frame(16, 16)
    write_exr(path, data, width=16, height=16)
    image = read_exr(path)  # the with-block inside has closed: arrays must still hold pixels
    np.testing.assert_array_equal(image.channels["Z"], data["Z"].astype(np.float32))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing"])
def test_unreadable_file_is_invalid_spec(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "f.exr"
    write_exr(path, frame(32, 32), width=32, height=32)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size * 3 // 4])
    elif damage == "garbage":
        path.write_bytes(b"not an exr at all")
    else:
        path.unlink()
    with pytest.raises(InvalidSpec, match="not a readable OpenEXR file") as info:
        read_exr(path)
    assert info.value.field == "path"


def write_plan_tiles(
    tmp_path: Path, width: int, height: int, data: dict[str, np.ndarray], **kw: int
) -> tuple[TilePlan, list[tuple[PlannedTile, Path]]]:
    """Writes one tile file per planned tile, cut from ``data`` with overscan."""
    plan = plan_tiles(width, height, **kw)
    files = []
    for tile in plan:
        rows, cols = (
            slice(tile.render_rect.y0, tile.render_rect.y1),
            slice(tile.render_rect.x0, tile.render_rect.x1),
        )
        path = tmp_path / f"tile{tile.index:03d}.exr"
        write_tile(
            path,
            {k: v[rows, cols] for k, v in data.items()},
            render_rect=tile.render_rect,
            width=width,
            height=height,
        )
        files.append((tile, path))
    return plan, files


def test_tiles_with_overscan_assemble_to_the_full_frame(tmp_path: Path) -> None:
    width, height = 101, 67
    data = frame(width, height)
    plan, files = write_plan_tiles(tmp_path, width, height, data, cols=4, rows=3, overscan=5)
    header, _ = raw_read(files[5][1])
    assert header["compression"] == OpenEXR.NO_COMPRESSION
    out = tmp_path / "frame.exr"
    attrs: dict[str, str | int | float] = {
        "job": "j1",
        "frame": 1001,
        "tile_plan": json.dumps(plan.to_json()),
    }
    assemble_files(files, out, width=width, height=height, channels=ALL, attributes=attrs)
    image = read_exr(out)
    assert image.data_window == PixelRect(x0=0, y0=0, x1=width, y1=height)
    assert image.compression == "zip"
    assert image.attributes["delta/frame"] == 1001
    for name in ALL:
        expected = np.ascontiguousarray(data[name], dtype=CHANNEL_DTYPES[name])
        np.testing.assert_array_equal(image.channels[name], expected, err_msg=name)


def test_overscan_is_cropped_not_blended() -> None:
    # Each tile's overscan holds a sentinel; only owned pixels may reach the frame.
    plan = plan_tiles(20, 10, cols=2, overscan=3)
    tiles = []
    for tile in plan:
        r = tile.render_rect
        z = np.full((r.height, r.width), -1.0, np.float32)
        z[tile.rect.slices_within(r)] = tile.index
        tiles.append((tile, {"Z": z}))
    out = assemble_frame(tiles, width=20, height=10, channels=["Z"])
    assert out["Z"].dtype == np.float32
    assert (out["Z"][:, :10] == 0).all() and (out["Z"][:, 10:] == 1).all()


def test_assemble_refuses_gaps_and_overlaps() -> None:
    plan = plan_tiles(20, 10, cols=2)
    tiles = [
        (t, {"Z": np.zeros((t.render_rect.height, t.render_rect.width), np.float32)}) for t in plan
    ]
    with pytest.raises(InvalidSpec, match=r"pixel \(x=10, y=0\) is not covered"):
        assemble_frame(tiles[:1], width=20, height=10, channels=["Z"])
    with pytest.raises(InvalidSpec, match="in 2 tiles"):
        assemble_frame([*tiles, tiles[0]], width=20, height=10, channels=["Z"])


@pytest.mark.parametrize("damage", ["truncate", "missing", "window", "channel"])
def test_bad_tile_file_raises_tile_corrupt(tmp_path: Path, damage: str) -> None:
    data = frame(32, 16)
    _, files = write_plan_tiles(tmp_path, 32, 16, data, cols=2, overscan=2)
    tile, path = files[1]
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "missing":
        path.unlink()
    elif damage == "window":
        files[1] = (tile, files[0][1])
    else:
        r = tile.render_rect
        write_tile(path, {"R": np.zeros((r.height, r.width))}, render_rect=r, width=32, height=16)
    with pytest.raises(TileCorrupt) as info:
        assemble_files(files, tmp_path / "out.exr", width=32, height=16, channels=ALL)
    assert info.value.path == str(files[1][1])
    assert str(files[1][1]) in info.value.message
    assert isinstance(info.value, InvalidSpec)
    assert not (tmp_path / "out.exr").exists()


def test_read_tile_returns_only_expected_channels(tmp_path: Path) -> None:
    rect = PixelRect(x0=2, y0=2, x1=10, y1=6)
    write_tile(tmp_path / "t.exr", frame(8, 4), render_rect=rect, width=16, height=8)
    got = read_tile(tmp_path / "t.exr", expect_rect=rect, expect_channels=["Z", "id"])
    assert list(got) == ["Z", "id"]


def test_check_frame_file_catches_problems(tmp_path: Path) -> None:
    good = tmp_path / "good.exr"
    data = frame(16, 8)
    data["Z"][0, 0] = np.inf  # empty depth is legitimate
    write_exr(good, data, width=16, height=8)
    assert check_frame_file(good, width=16, height=8, channels=ALL) == []

    nan = tmp_path / "nan.exr"
    bad = frame(16, 8)
    bad["G"][3, 5] = np.nan
    bad["Z"][1, 2] = -np.inf
    write_exr(nan, bad, width=16, height=8)
    problems = check_frame_file(nan, width=16, height=8, channels=ALL, frame=1001)
    text = [str(p) for p in problems]
    assert any("channel G" in t and "x=5, y=3" in t for t in text), text
    assert any("channel Z" in t and "x=2, y=1" in t for t in text), text
    assert all(p.frame == 1001 for p in problems)

    problems = check_frame_file(good, width=32, height=8, channels=ALL)
    assert any("expected 32x8" in p.problem for p in problems)

    problems = check_frame_file(good, width=16, height=8, channels=[*ALL, "N"])
    assert [p.problem for p in problems] == ["missing channels: N"]
    problems = check_frame_file(good, width=16, height=8, channels=ALL[:4])
    assert [p.problem for p in problems] == ["unexpected channels: Z, id, velocity.X, velocity.Y"]

    crop = tmp_path / "crop.exr"
    write_exr(crop, frame(8, 8), width=16, height=8, data_window=PixelRect(x0=0, y0=0, x1=8, y1=8))
    assert any(
        "data window" in p.problem for p in check_frame_file(crop, width=16, height=8, channels=ALL)
    )

    missing = check_frame_file(tmp_path / "nope.exr", width=16, height=8, channels=ALL, frame=7)
    assert [str(p) for p in missing] == [f"frame 7: {tmp_path / 'nope.exr'}: file is missing"]


def test_check_frames_in_frame_order(tmp_path: Path) -> None:
    good = tmp_path / "good.exr"
    write_exr(good, frame(8, 8), width=8, height=8)
    junk = tmp_path / "junk.exr"
    junk.write_bytes(b"junk")
    problems = check_frames({3: junk, 1: good, 2: None}, width=8, height=8, channels=ALL)
    assert [p.frame for p in problems] == [2, 3]
    assert "no file" in problems[0].problem
    assert "unreadable" in problems[1].problem


def test_srgb_transfer_function_is_piecewise_not_gamma() -> None:
    v = np.array([0.0, 0.001, 0.0031308, 0.18, 0.5, 1.0, 2.0, np.nan])
    got = linear_to_srgb8(v)
    assert got.tolist() == [0, 3, 10, 118, 188, 255, 255, 0]
    assert got[3] != round(255 * 0.18 ** (1 / 2.2))  # 2.2 gamma would give 117


def test_preview_png_and_contact_sheet(tmp_path: Path) -> None:
    data = frame(64, 32)
    preview_png(data, tmp_path / "a.png")
    preview_png(data, tmp_path / "b.png", max_width=32)
    with Image.open(tmp_path / "a.png") as a, Image.open(tmp_path / "b.png") as b:
        assert (a.mode, a.size) == ("RGB", (64, 32))
        assert b.size == (32, 16)
        px = np.asarray(a)
    expected = linear_to_srgb8(np.stack([data[c].astype(np.float16) for c in "RGB"], axis=-1))
    assert np.abs(px.astype(int) - expected.astype(int)).max() <= 1
    contact_sheet(
        [tmp_path / "a.png", tmp_path / "b.png", tmp_path / "gone.png"],
        tmp_path / "sheet.png",
        columns=2,
        thumb_width=40,
        labels=["1", "2", "3"],
    )
    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.width == 80
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "sheet.png"]
    with pytest.raises(InvalidSpec):
        preview_png({"Z": data["Z"]}, tmp_path / "z.png")


EXR_TOOLS = [t for t in ("exrheader", "oiiotool") if shutil.which(t)]


@pytest.mark.skipif(
    not EXR_TOOLS,
    reason="neither exrheader nor oiiotool is installed "
    "(apt-get install openexr openimageio-tools)",
)
def test_independent_reader_sees_custom_attributes(tmp_path: Path) -> None:
    path = tmp_path / "f.exr"
    write_exr(path, frame(8, 8), width=8, height=8, attributes={"job": "job-42", "frame": 1001})
    tool = EXR_TOOLS[0]
    cmd = [tool, str(path)] if tool == "exrheader" else [tool, "--stats", "-v", "--info", str(path)]
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=True, env={**os.environ, "LC_ALL": "C"}
    ).stdout
    assert "delta/job" in out and "job-42" in out
    assert "1001" in out

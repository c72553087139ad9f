"""Job specs are strict, and their errors name the field; *Out schemas match the tables."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from farm import schemas
from farm.db import models as m
from farm.errors import invalid_spec_from_errors
from tests.factories import small_camera


def spec(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "job",
        "shot_id": 1,
        "frames": {"first": 1, "last": 4},
        "resolution": {"width": 64, "height": 32},
        "camera": small_camera().model_dump(),
        "layers": [
            {"name": "sim", "kind": "particle_sim", "input_asset_version": 1},
            {
                "name": "render",
                "kind": "particle_render",
                "depends_on": ["sim"],
                "tiles": {"cols": 4, "rows": 2},
            },
            {"name": "comp", "kind": "assemble", "depends_on": ["render"]},
        ],
    }
    base.update(changes)
    return base


def error_of(raw: dict[str, Any]) -> tuple[str, str | None]:
    with pytest.raises(ValidationError) as info:
        schemas.JobSpec.model_validate(raw)
    error = invalid_spec_from_errors(list(info.value.errors()))
    return error.message, error.field


def test_a_good_spec_parses() -> None:
    job = schemas.JobSpec.model_validate(spec())
    assert [layer.name for layer in job.layers] == ["sim", "render", "comp"]
    assert len(job.frames) == 4


def test_unknown_layer_kind_names_the_field() -> None:
    raw = spec()
    raw["layers"][0]["kind"] = "fluid_sim"
    message, field = error_of(raw)
    assert field == "layers[0].kind"
    assert "particle_sim" in message and "fluid_sim" in message


def test_empty_frame_range_names_the_field() -> None:
    message, field = error_of(spec(frames={"first": 10, "last": 2}))
    assert field == "frames"
    assert "empty frame range 10-2" in message


def test_negative_frame_names_the_field() -> None:
    message, field = error_of(spec(frames={"first": -3, "last": 2}))
    assert field == "frames.first"
    assert "greater than or equal to 0" in message


def test_tile_grid_larger_than_the_image_names_the_field() -> None:
    raw = spec()
    raw["layers"][1]["tiles"] = {"cols": 65, "rows": 2}
    message, _field = error_of(raw)
    assert message.startswith("layers[1].tiles.cols")
    assert "at most 64" in message


@pytest.mark.parametrize(
    ("tiles", "wanted"),
    [
        ({"balanced": 4, "cols": 2, "rows": 2}, "give one of: cols and rows"),
        ({"balanced": 4, "target_runtime_s": 5.0}, "drop target_runtime_s"),
        ({"balanced": 0}, "greater than or equal to 1"),
        ({"balanced": 5000}, "less than or equal to 4096"),
        ({"overscan": 8}, "give one of"),
    ],
)
def test_balanced_tiles_are_one_way_of_tiling_alone(tiles: dict[str, Any], wanted: str) -> None:
    raw = spec()
    raw["layers"][1]["tiles"] = tiles
    message, _field = error_of(raw)
    assert message.startswith("layers[1].tiles")
    assert wanted in message


def test_balanced_tiles_are_a_valid_layer() -> None:
    raw = spec()
    raw["layers"][1]["tiles"] = {"balanced": 3, "overscan": 4}
    tiling = schemas.JobSpec.model_validate(raw).layer("render").tiles
    assert tiling is not None and (tiling.balanced, tiling.overscan) == (3, 4)


def test_dependency_on_unknown_layer_names_the_field() -> None:
    raw = spec()
    raw["layers"][2]["depends_on"] = ["lighting"]
    message, _field = error_of(raw)
    assert message.startswith("layers[2].depends_on: unknown layer 'lighting'")


def test_dependency_cycle_is_refused() -> None:
    raw = spec()
    raw["layers"][0]["depends_on"] = ["comp"]
    message, _ = error_of(raw)
    assert "dependency cycle" in message


def test_unknown_fields_are_refused() -> None:
    message, field = error_of(spec(urgency=5))
    assert field == "urgency"
    assert "Extra inputs" in message


@pytest.mark.parametrize(
    ("schema", "table"),
    [
        (schemas.ShowOut, m.Show),
        (schemas.ShotOut, m.Shot),
        (schemas.AssetVersionOut, m.AssetVersion),
        (schemas.PoolOut, m.Pool),
        (schemas.UserOut, m.User),
        (schemas.TileOut, m.Tile),
        (schemas.QuotaOut, m.Quota),
        (schemas.JobSummary, m.Job),
    ],
)
def test_out_schemas_read_straight_from_their_tables(
    schema: type[BaseModel], table: type[m.Base]
) -> None:
    """Every *Out field is a column or a property of its table: no hand-copied fields."""
    attributes = set(table.__table__.columns.keys()) | {
        name for name in dir(table) if isinstance(getattr(table, name, None), property)
    }
    assert set(schema.model_fields) <= attributes


@pytest.mark.parametrize(
    ("change", "wanted"),
    [
        (
            lambda layers: layers[0].pop("input_asset_version"),
            "layers[0].input_asset_version: a particle_sim layer needs an input asset version",
        ),
        (
            lambda layers: layers[1].update(depends_on=[]),
            "layers[1].input_asset_version: a particle_render layer needs an input asset "
            "version (a particle cache) or a dependency on a particle_sim layer",
        ),
        (
            lambda layers: layers[1].pop("tiles"),
            "layers[1].tiles: a particle_render layer needs a tiling",
        ),
        (
            lambda layers: layers[2].update(depends_on=["sim"]),
            "layers[2].depends_on: an assemble layer stitches the tiles of exactly one "
            "particle_render layer; it depends on 0",
        ),
    ],
)
def test_what_each_layer_reads_is_checked_by_the_spec_itself(change: Any, wanted: str) -> None:
    """Refused at parse time (the SDK too), not first found by the farm's database checks."""
    raw = spec()
    change(raw["layers"])
    message, field = error_of(raw)
    assert message.startswith(wanted), message
    assert field is not None and message.startswith(field)

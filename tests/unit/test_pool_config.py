"""The pools file: a documented TOML file, strict, whose errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from farm.errors import InvalidSpec
from farm.pool_config import DEFAULT_FARM_CONFIG, load_farm_config, parse_farm_config
from farm.settings import Settings

EXAMPLE = Path(__file__).parents[2] / "infra" / "farm.example.toml"

CPU = """
[[pools]]
name = "cpu"
accelerator = "cpu"
cores_per_node = 32
memory_gb = 128
price_per_node_hour = 0.48
"""


def error(text: str) -> InvalidSpec:
    with pytest.raises(InvalidSpec) as info:
        parse_farm_config(text)
    return info.value


def test_no_file_means_the_embedded_pools_of_todays_farm() -> None:
    config = load_farm_config(None)
    assert config is DEFAULT_FARM_CONFIG
    # (name, Ray accelerator, price per node-hour, CPUs per node) as the farm always had them.
    assert [
        (p.name, p.ray_accelerator_type, p.price_per_node_hour, p.cores_per_node)
        for p in config.pools
    ] == [("cpu", None, 0.48, 32), ("h100", "H100", 9.80, 8), ("ascend", "Ascend910B", 6.20, 8)]
    assert {p.currency for p in config.pools} == {"USD"}
    assert config.licences == {}


def test_the_example_file_parses_with_pools_and_licences() -> None:
    config = load_farm_config(EXAMPLE)
    assert [p.name for p in config.pools] == ["cpu", "h100", "ascend"]
    h100 = config.pools[1]
    assert (h100.accelerator, h100.accelerators_per_node, h100.accelerator_memory_gb) == (
        "nvidia-h100",
        8,
        80,
    )
    assert h100.backfill
    assert config.licences == {"houdini": 20}


def test_a_bad_value_names_the_pool_and_key() -> None:
    bad = error(CPU + CPU.replace('"cpu"', '"big"', 1).replace("32", "0"))
    assert bad.message.startswith("farm.toml: pools[1].cores_per_node: ")
    assert bad.field == "pools[1].cores_per_node"


def test_an_unknown_key_is_named() -> None:
    bad = error(CPU + "colour = 3\n")
    assert bad.message == (
        "farm.toml: pools[0].colour: unknown key; docs/pools.md lists the keys a pools file takes"
    )


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        (CPU + CPU, "pools[1].name: pool 'cpu' is declared twice"),
        (
            CPU.replace('"cpu"\ncores', '"nvidia-a100"\ncores'),
            "pools[0].accelerators_per_node: a nvidia-a100 pool needs at least 1 per node",
        ),
        (CPU + "backfill = true\n", "pools[0].backfill: only accelerator pools lend"),
        (CPU + "[licences]\nhoudini = -1\n", "licences.houdini: count must be >= 0"),
        ("pools = []\n", "pools: declare at least one [[pools]] table"),
        ("pools = [", "not valid TOML"),
    ],
)
def test_inconsistent_files_are_refused_with_the_key(text: str, wanted: str) -> None:
    assert wanted in error(text).message


def test_licences_take_a_count_or_a_count_table() -> None:
    config = parse_farm_config(CPU + "[licences]\nhoudini = { count = 20 }\nnuke = 4\n")
    assert config.licences == {"houdini": 20, "nuke": 4}


def test_unknown_accelerator_kinds_get_rays_spelling() -> None:
    config = parse_farm_config(
        CPU.replace('"cpu"\ncores', '"nvidia-a100"\naccelerators_per_node = 4\ncores')
    )
    assert config.pools[0].ray_accelerator_type == "A100"


def test_the_pools_file_defaults_to_farm_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert settings.resolved_pools_file is None
    (tmp_path / "farm.toml").write_text(CPU)
    assert settings.resolved_pools_file == tmp_path / "farm.toml"


def test_a_missing_pools_file_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="FARM_POOLS_FILE"):
        Settings(pools_file=tmp_path / "nope.toml")

"""Which pools fit a layer's requirements, why none does, and how a tile asks Ray for its pool."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from farm.pool_config import DEFAULT_FARM_CONFIG
from farm.vocab import Requirements
from scheduler.plan.fit import PoolShape, fitting_pools, slots, unfit_reason
from scheduler.runtime import GIB, ray_options

CPU = PoolShape("cpu", "cpu", cores_per_node=32, memory_gb=128)
H100 = PoolShape("h100", "nvidia-h100", 32, 512, 8, 80, backfill=True)
ASCEND = PoolShape("ascend", "ascend-910b", 32, 512, 8, 64)
POOLS = (H100, ASCEND, CPU)  # cpu last on purpose: preference is by kind, not by order


def test_cpu_work_prefers_cpu_pools_then_backfill_ones() -> None:
    assert fitting_pools(Requirements(cores=4), POOLS) == ("cpu", "h100")


def test_only_pools_that_allow_it_are_backfilled() -> None:
    no_backfill = (PoolShape("h100", "nvidia-h100", 32, 512, 8, 80), ASCEND, CPU)
    assert fitting_pools(Requirements(), no_backfill) == ("cpu",)
    assert fitting_pools(Requirements(), (ASCEND,)) == ()
    assert "no accelerator pool allows backfill" in unfit_reason(Requirements(), (ASCEND,))


def test_cpu_work_too_big_for_cpu_nodes_may_backfill() -> None:
    assert fitting_pools(Requirements(memory_gb=256), POOLS) == ("h100",)


def test_accelerator_work_goes_only_to_pools_of_that_kind() -> None:
    req = Requirements(accelerator="ascend-910b", accelerator_count=2)
    assert fitting_pools(req, POOLS) == ("ascend",)
    assert fitting_pools(Requirements(accelerator="nvidia-h100", accelerator_count=9), POOLS) == ()


def test_80_gb_of_accelerator_memory_is_refused_with_a_readable_reason() -> None:
    req = Requirements(accelerator="ascend-910b", accelerator_memory_gb=80)
    assert fitting_pools(req, POOLS) == ()
    assert unfit_reason(req, POOLS) == (
        "no node of any pool has 80 GB of accelerator memory on ascend-910b "
        "(largest: 64 GB in pool ascend)"
    )
    assert fitting_pools(req.model_copy(update={"accelerator": "nvidia-h100"}), POOLS) == ("h100",)


@pytest.mark.parametrize(
    ("req", "pool", "reason"),
    [
        (
            Requirements(accelerator="nvidia-b200"),
            None,
            "no pool has accelerator nvidia-b200 (pools: h100, ascend, cpu)",
        ),
        (Requirements(cores=64), "cpu", "pool cpu has 32 cores per node; the layer needs 64"),
        (
            Requirements(cores=64),
            None,
            "no node of any pool has 64 cores (largest: 32 in pool cpu)",
        ),
        (
            Requirements(memory_gb=600),
            None,
            "no node of any pool has 600 GB of memory (largest: 512 GB in pool h100)",
        ),
        (
            Requirements(accelerator="nvidia-h100", accelerator_count=16),
            None,
            "no node of any pool has 16 nvidia-h100 accelerators (largest: 8 in pool h100)",
        ),
        (
            Requirements(accelerator="nvidia-h100"),
            "cpu",
            "pool cpu has no nvidia-h100 accelerators (it is cpu)",
        ),
        (Requirements(), "quantum", "no pool named quantum (pools: h100, ascend, cpu)"),
    ],
)
def test_unfit_reasons_name_the_blocking_requirement(
    req: Requirements, pool: str | None, reason: str
) -> None:
    assert fitting_pools(req, POOLS, pool=pool) == ()
    assert unfit_reason(req, POOLS, pool=pool) == reason


def test_a_named_pool_is_honoured_when_it_fits() -> None:
    assert fitting_pools(Requirements(), POOLS, pool="ascend") == ("ascend",)
    assert fitting_pools(Requirements(cores=8), POOLS, pool="h100") == ("h100",)
    assert unfit_reason(Requirements(), POOLS, pool="ascend") == ""


def test_requirements_one_node_cannot_hold_together_are_refused() -> None:
    small_memory = PoolShape("lean", "cpu", 64, 16)
    big_memory = PoolShape("fat", "cpu", 4, 1024)
    req = Requirements(cores=32, memory_gb=512)
    assert fitting_pools(req, (small_memory, big_memory)) == ()
    assert unfit_reason(req, (small_memory, big_memory)).startswith("no single pool has all of")


def test_a_slot_is_a_core() -> None:
    assert slots(Requirements()) == 1
    assert slots(Requirements(cores=6)) == 6


def test_requirements_are_strict() -> None:
    assert Requirements(accelerator="nvidia-h100").accelerator_count == 1
    with pytest.raises(ValidationError, match="need an accelerator kind"):
        Requirements(accelerator_count=2)
    with pytest.raises(ValidationError):
        Requirements(cores=0)
    with pytest.raises(ValidationError):
        Requirements(accelerator="NVIDIA H100")


def test_the_embedded_pools_fit_todays_layers() -> None:
    """A layer naming a pool, with no requirements, fits as it always did."""
    for pool in ("cpu", "h100", "ascend"):
        assert fitting_pools(Requirements(), DEFAULT_FARM_CONFIG.shapes, pool=pool) == (pool,)


# ----------------------------------------------------------------------------- Ray options
def test_nvidia_work_asks_for_gpus_and_rays_accelerator_type() -> None:
    req = Requirements(cores=4, memory_gb=16, accelerator="nvidia-h100", accelerator_count=2)
    assert ray_options(req, H100, virtual=False) == {
        "num_cpus": 4,
        "memory": 16 * GIB,
        "resources": {"pool:h100": 4},
        "num_gpus": 2,
        "accelerator_type": "H100",
    }


def test_ascend_work_asks_for_rays_npu_resource() -> None:
    req = Requirements(accelerator="ascend-910b", accelerator_count=1)
    assert ray_options(req, ASCEND, virtual=False) == {
        "num_cpus": 1,
        "resources": {"pool:ascend": 1, "NPU": 1},
        "accelerator_type": "Ascend910B",
    }


def test_a_virtual_pool_asks_only_for_its_custom_resources() -> None:
    req = Requirements(cores=2, memory_gb=64, accelerator="nvidia-h100")
    options = ray_options(req, H100, virtual=True)
    assert options == {
        "num_cpus": 2,
        "resources": {"pool:h100": 2, "accelerator_type:H100": 0.001},
    }
    assert "num_gpus" not in options and "NPU" not in options["resources"]


def test_cpu_work_backfilling_an_accelerator_pool_asks_for_no_accelerator() -> None:
    assert ray_options(Requirements(), H100, virtual=False) == {
        "num_cpus": 1,
        "resources": {"pool:h100": 1},
    }
    assert ray_options(Requirements(), CPU, virtual=False) == {
        "num_cpus": 1,
        "resources": {"pool:cpu": 1},
    }

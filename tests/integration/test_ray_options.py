"""A tile placed with ``ray_options`` runs on local Ray's virtual pools, never pending forever."""

from __future__ import annotations

import pytest

from farm.pool_config import DEFAULT_FARM_CONFIG
from farm.vocab import Requirements
from scheduler.runtime import ray_options


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize(
    ("pool", "req"),
    [
        ("cpu", Requirements()),
        ("h100", Requirements(accelerator="nvidia-h100", accelerator_count=2, memory_gb=256)),
        ("ascend", Requirements(accelerator="ascend-910b")),
    ],
)
def test_virtual_pools_place_accelerator_work(pool: str, req: Requirements) -> None:
    import ray

    shape = next(s for s in DEFAULT_FARM_CONFIG.shapes if s.name == pool)
    virtual = shape.ray_accelerator_type is not None  # as start_ray declared them

    @ray.remote
    def where() -> str:
        return str(ray.get_runtime_context().get_node_id())

    ref = where.options(**ray_options(req, shape, virtual=virtual)).remote()  # type: ignore[attr-defined]
    ready, _ = ray.wait([ref], timeout=60)
    assert ready, f"a {pool} tile stayed pending with {ray_options(req, shape, virtual=virtual)}"

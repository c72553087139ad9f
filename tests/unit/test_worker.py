"""What ``farm worker`` declares to Ray for a node of a pool (scheduler/worker.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from farm.errors import InvalidSpec
from farm.pool_config import DEFAULT_FARM_CONFIG
from scheduler.runtime import GIB
from scheduler.worker import (
    Hardware,
    find_pool,
    node_resources,
    ray_start_command,
    ray_start_env,
)

CPU = find_pool(DEFAULT_FARM_CONFIG, "cpu")
H100 = find_pool(DEFAULT_FARM_CONFIG, "h100")
ASCEND = find_pool(DEFAULT_FARM_CONFIG, "ascend")


def test_a_cpu_node_offers_its_cores_as_pool_slots_capped_at_the_machine() -> None:
    big = Hardware(cpus=256, memory_gb=4096)
    node = node_resources(CPU, big)
    assert node.num_cpus == CPU.cores_per_node
    assert node.resources == {"pool:cpu": float(CPU.cores_per_node)}
    assert node.labels == {"farm-pool": "cpu"}
    assert node.memory_bytes == int(CPU.memory_gb * GIB)  # the machine has room to spare
    assert node.num_gpus == 0  # a cpu node never offers the GPUs Ray would detect
    small = node_resources(CPU, Hardware(cpus=2, memory_gb=1.5))
    assert small.num_cpus == 2 and small.resources == {"pool:cpu": 2.0}
    # Never more than the machine has, less the object store's share.
    assert small.memory_bytes == int(1.5 * 0.7 * GIB)
    assert any("offers 2 slots" in note for note in small.notes)
    assert node_resources(CPU, big, num_cpus=3).resources == {"pool:cpu": 3.0}


def test_an_accelerator_pool_needs_the_device_unless_virtual() -> None:
    laptop = Hardware(cpus=8, memory_gb=32)
    with pytest.raises(InvalidSpec, match="needs nvidia-h100 accelerators and this machine"):
        node_resources(H100, laptop)
    with pytest.raises(InvalidSpec, match="needs H100 and this machine has 8 x A100"):
        node_resources(H100, Hardware(8, 32, accelerators=8, accelerator_type="A100"))
    real = node_resources(H100, Hardware(64, 512, accelerators=8, accelerator_type="H100"))
    # Ray detects the GPUs and sets accelerator_type:H100 itself: the farm adds only its pool.
    assert real.resources == {"pool:h100": float(min(H100.cores_per_node, 64))}
    assert "farm-virtual" not in real.labels and real.num_gpus is None  # Ray counts them
    assert "--num-gpus=0" in ray_start_command(node_resources(ASCEND, laptop, virtual=True), "h:1")
    virtual = node_resources(ASCEND, laptop, virtual=True)
    assert virtual.resources["accelerator_type:Ascend910B"] == 1.0
    assert virtual.labels == {"farm-pool": "ascend", "farm-virtual": "true"}


def test_ray_start_command_and_token() -> None:
    node = node_resources(CPU, Hardware(cpus=4, memory_gb=8))
    argv = ray_start_command(node, "head:6379", ray_bin="/opt/ray")
    assert argv[:3] == ["/opt/ray", "start", "--address=head:6379"]
    assert "--num-cpus=4" in argv and argv[-1] == "--block"
    resources = next(a for a in argv if a.startswith("--resources="))
    assert json.loads(resources.split("=", 1)[1]) == {"pool:cpu": 4.0}
    assert "--labels=farm-pool=cpu" in argv
    assert "--block" not in ray_start_command(node, "head:6379", block=False)


def test_the_token_goes_in_the_environment_never_on_the_command_line(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret")
    env = ray_start_env(token)
    # Idle workers stay warm (imports and kernels loaded) instead of dying after 1 s.
    assert env["RAY_idle_worker_killing_time_threshold_ms"] == "600000"
    assert env["RAY_AUTH_TOKEN_PATH"] == str(token.resolve())
    assert env["RAY_AUTH_MODE"] == "token"  # else a joining node sends no token at all
    node = node_resources(CPU, Hardware(cpus=4, memory_gb=8))
    assert not any("s3cret" in a for a in ray_start_command(node, "head:6379"))
    with pytest.raises(InvalidSpec, match="no such file"):
        ray_start_env(tmp_path / "missing")


def test_an_unknown_pool_lists_the_pools() -> None:
    with pytest.raises(InvalidSpec, match="unknown pool 'gpu'; pools are ascend, cpu, h100"):
        find_pool(DEFAULT_FARM_CONFIG, "gpu")

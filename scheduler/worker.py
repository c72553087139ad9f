"""A farm node: what ``farm worker`` asks Ray for when a machine joins the cluster in a pool.

A node of pool ``P`` is a Ray node with the custom resource ``pool:P`` = its slots (one per core it
gives the farm), the label ``farm-pool=P``, Ray's ``memory`` from the pool file (never more than
the machine has) and its accelerators. Ray detects NVIDIA GPUs and Ascend NPUs itself (``GPU``,
``NPU`` and ``accelerator_type:<X>``); the farm only checks that the machine really has what its
pool promises, so a misplaced node is refused at start instead of failing tiles later.

``virtual=True`` lets a CPU machine stand in for an accelerator node (a laptop, CI, the test
cluster): it declares ``accelerator_type:<X>`` as a plain custom resource and labels the node
``farm-virtual=true``. The dispatcher then places that pool's tiles without asking for devices
(:func:`scheduler.runtime.pool_view`), exactly as the embedded farm does.

The same :func:`node_resources` builds ``ray start`` arguments (:func:`ray_start_command`) and the
nodes of the multi-node tests (``ray.cluster_utils.Cluster.add_node``), so what the tests prove
is what a real worker declares.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from farm.errors import InvalidSpec
from farm.pool_config import FarmConfig, PoolSpec
from farm.vocab import accelerator_vendor
from scheduler.runtime import GIB, KEEP_WARM_WORKERS, accelerator_resource, pool_resource

POOL_LABEL = "farm-pool"
"""Ray node label naming the node's pool (``ray.nodes()[i]["Labels"]``)."""
OBJECT_STORE_SHARE = 0.3
"""Share of a node's memory Ray gives its object store by default."""
VIRTUAL_LABEL = "farm-virtual"
"""Ray node label set on a node that declares its pool's accelerator without having it."""


@dataclass(frozen=True)
class Hardware:
    """What this machine has, as far as the farm cares."""

    cpus: int
    memory_gb: float
    accelerators: int = 0
    accelerator_type: str | None = None
    """Ray's name of the detected accelerator (``H100``, ``Ascend910B``), None when none."""


@dataclass(frozen=True)
class NodeResources:
    """The resources and labels one farm node offers Ray."""

    num_cpus: int
    memory_bytes: int
    num_gpus: int | None
    resources: dict[str, float]
    labels: dict[str, str]
    notes: list[str] = field(default_factory=list)


def detect_hardware() -> Hardware:
    """This machine's cores, memory and accelerators, through Ray's own accelerator managers
    (the ones ``ray start`` uses, so the farm and Ray never disagree)."""
    from ray._private.accelerators import get_accelerator_manager_for_resource

    try:  # Ray's own, container-aware figures (cgroup CPU quota and memory limit)
        from ray._common.utils import get_system_memory
        from ray._private.utils import get_num_cpus

        cpus = int(get_num_cpus())
        memory_gb = get_system_memory() / GIB
    except Exception:
        cpus = os.cpu_count() or 1
        memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    for resource in ("GPU", "NPU"):
        try:
            manager = get_accelerator_manager_for_resource(resource)
            count = int(manager.get_current_node_num_accelerators())
            kind = manager.get_current_node_accelerator_type() if count else None
        except Exception:  # a vendor library that is absent or broken: no such device here
            continue
        if count:
            return Hardware(cpus, memory_gb, count, kind)
    return Hardware(cpus, memory_gb)


def find_pool(config: FarmConfig, name: str) -> PoolSpec:
    """The pool called ``name`` in the pools file, or a message listing the pools there are."""
    for pool in config.pools:
        if pool.name == name:
            return pool
    names = ", ".join(sorted(p.name for p in config.pools))
    raise InvalidSpec(f"unknown pool {name!r}; pools are {names}", field="pool")


def node_resources(
    pool: PoolSpec,
    hardware: Hardware,
    *,
    num_cpus: int | None = None,
    virtual: bool = False,
) -> NodeResources:
    """What a node of ``pool`` on ``hardware`` declares to Ray.

    Args:
        pool: the node's pool, from the pools file.
        hardware: what the machine has (:func:`detect_hardware`).
        num_cpus: cores to give the farm; default the pool's ``cores_per_node``, capped at the
            machine's cores so Ray never oversubscribes them.
        virtual: stand in for an accelerator node on a machine without the device.

    Raises:
        InvalidSpec: the pool wants an accelerator this machine lacks (and not ``virtual``),
            or ``num_cpus`` is below 1.
    """
    notes: list[str] = []
    cpus = num_cpus if num_cpus is not None else min(pool.cores_per_node, hardware.cpus)
    if cpus < 1:
        raise InvalidSpec("--num-cpus must be at least 1", field="num_cpus")
    if num_cpus is None and hardware.cpus < pool.cores_per_node:
        notes.append(
            f"this machine has {hardware.cpus} cores, pool {pool.name} promises "
            f"{pool.cores_per_node}: the node offers {cpus} slots"
        )
    # Ray's object store takes about 30 % of the machine beside the tasks' memory: the memory
    # the node offers tiles is what is left, so a retry asking a whole node cannot OOM it.
    memory_gb = min(pool.memory_gb, hardware.memory_gb * (1 - OBJECT_STORE_SHARE))
    resources: dict[str, float] = {pool_resource(pool.name): float(cpus)}
    labels = {POOL_LABEL: pool.name}
    ray_type = pool.ray_accelerator_type
    if ray_type is not None:
        vendor = accelerator_vendor(pool.accelerator)
        if virtual:
            resources[accelerator_resource(ray_type)] = 1.0
            labels[VIRTUAL_LABEL] = "true"
            notes.append(
                f"virtual {ray_type} node: pool {pool.name}'s tiles run on this node's CPU"
            )
        elif hardware.accelerators == 0:
            raise InvalidSpec(
                f"pool {pool.name} needs {pool.accelerator} accelerators and this machine has "
                f"none that Ray can see (no {vendor} device); start it in a pool without "
                "accelerators, or pass --virtual to stand in on CPU for a test",
                field="pool",
            )
        elif hardware.accelerator_type not in (None, ray_type):
            raise InvalidSpec(
                f"pool {pool.name} needs {ray_type} and this machine has "
                f"{hardware.accelerators} x {hardware.accelerator_type}",
                field="pool",
            )
        elif hardware.accelerators < pool.accelerators_per_node:
            notes.append(
                f"this machine has {hardware.accelerators} {ray_type}, pool {pool.name} "
                f"promises {pool.accelerators_per_node}"
            )
    gpus_detected = ray_type is not None and not virtual
    return NodeResources(
        num_cpus=cpus,
        memory_bytes=int(memory_gb * GIB),
        # A cpu pool's or a virtual node never offers GPUs Ray would otherwise detect on the
        # machine: its pool would ask for none, and a real pool's tiles must not land there.
        num_gpus=None if gpus_detected else 0,
        resources=resources,
        labels=labels,
        notes=notes,
    )


def ray_start_command(
    node: NodeResources, address: str, *, ray_bin: str = "ray", block: bool = True
) -> list[str]:
    """The ``ray start`` argv that joins ``address`` as ``node``."""
    argv = [
        ray_bin,
        "start",
        f"--address={address}",
        f"--num-cpus={node.num_cpus}",
        f"--memory={node.memory_bytes}",
        *([f"--num-gpus={node.num_gpus}"] if node.num_gpus is not None else []),
        f"--resources={json.dumps(node.resources, sort_keys=True)}",
        "--labels=" + ",".join(f"{k}={v}" for k, v in sorted(node.labels.items())),
        "--disable-usage-stats",
    ]
    if block:
        argv.append("--block")
    return argv


def ray_start_env(token_file: Path | None) -> dict[str, str]:
    """The environment of ``ray start``: the cluster's token when it uses one.

    Ray 2.60 reads ``RAY_AUTH_TOKEN_PATH`` (a file holding the token), and a joining node
    sends it only with ``RAY_AUTH_MODE=token`` (without it the head refuses the node: "Invalid
    AuthToken"); a cluster started with ``RAY_AUTH_MODE=disabled`` needs none. The token never
    goes on the command line, where ``ps`` would show it.
    """
    env = dict(os.environ)
    # Keep idle workers warm as the embedded farm does (runtime.KEEP_WARM_WORKERS): a raylet
    # reads its own settings from RAY_<name>; the operator's value, when set, wins.
    for name, value in KEEP_WARM_WORKERS.items():
        env.setdefault(f"RAY_{name}", str(value))
    if token_file is not None:
        if not token_file.is_file():
            raise InvalidSpec(f"--token-file {token_file}: no such file", field="token_file")
        env["RAY_AUTH_TOKEN_PATH"] = str(token_file.resolve())
        env["RAY_AUTH_MODE"] = "token"
        env.pop("RAY_AUTH_TOKEN", None)
    return env

"""Starting or joining Ray, and mapping farm pools to Ray resources.

A pool is the custom resource ``pool:<name>`` (never ``GPU`` or ``NPU``, which Ray reserves).
A pool with an accelerator also sets Ray's ``accelerator_type:<name>`` so tasks can ask for it
the Ray way. On a machine without that accelerator the embedded farm declares the pool
*virtually* through these custom resources: placement logic runs unchanged, the work runs on CPU,
and the farm says so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from farm.errors import Unavailable
from farm.vocab import Requirements, accelerator_vendor
from scheduler.plan.fit import PoolShape, slots

log = logging.getLogger("scheduler.runtime")


WORKER_ENV: dict[str, str] = {
    "NUMBA_NUM_THREADS": "1",
    "MALLOC_MMAP_THRESHOLD_": str(1 << 30),
    "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
}
"""Environment of every Ray worker the farm starts, locally or on a cluster it joins.

A worker holds one CPU slot, so numba runs one thread. The two glibc settings keep the memory a
render frees for the next tile: by default every array over 128 KiB-32 MiB is ``mmap``-ed and
handed back on free, and taking a page again costs a page fault, about 4 us on this VM. A hot
1080p tile allocates tens of MB of binning and pixel buffers, so a render paid 5,000-12,000
faults per tile and ~35,000 per whole frame; with these settings it pays none after the first
(``bench/tiling_speedup.py``, docs/performance.md). Up to 1 GiB of freed heap stays with each
worker instead of going back to the OS.
"""


KEEP_WARM_WORKERS: dict[str, int] = {"idle_worker_killing_time_threshold_ms": 10 * 60 * 1000}
"""Ray settings of a node the farm starts: an idle worker is kept 10 minutes, not 1 second.

Ray kills idle workers above its soft limit (one per CPU) after a second. A render session is
an actor, and its process counts towards that limit, so while sessions ran Ray killed the warm
idle task workers; the next stateless tiles then paid a cold worker each (imports and numba's
kernels: 0.9 s of CPU per worker here) -- a 1-frame job took 1.4-1.7 s instead of 0.6-0.9 s
after a session job (``bench/tiling_speedup.py``). A cluster's head takes the same setting as
``ray start --head --system-config`` (docs/deploy.md)."""


def pool_resource(pool: str) -> str:
    """The Ray custom resource that marks a node as part of ``pool``."""
    return f"pool:{pool}"


GIB = 1 << 30
"""Bytes in one GB as the pools file and requirements count it (GiB, as Ray does)."""


def accelerator_resource(ray_type: str) -> str:
    """Ray's own custom resource for an accelerator type (what ``accelerator_type=`` asks)."""
    return f"accelerator_type:{ray_type}"


def ray_options(req: Requirements, pool: PoolShape, *, virtual: bool) -> dict[str, Any]:
    """The ``.options(...)`` keyword arguments that place one tile of ``req`` on ``pool``.

    Args:
        req: the tile's requirements (the layer's).
        pool: the pool chosen for it (one of :func:`~scheduler.plan.fit.fitting_pools`).
        virtual: the pool is declared on nodes without its device (:func:`start_ray` on a
            machine without the accelerator). Then only ``num_cpus``, ``pool:<name>`` and
            ``accelerator_type:<X>`` are asked for: ``num_gpus``, ``NPU`` or a node-sized
            ``memory`` would stay pending forever there.

    Returns:
        ``num_cpus=cores``, ``memory`` in bytes when set, ``resources={"pool:<name>": slots}``;
        NVIDIA (and AMD) add ``num_gpus`` and ``accelerator_type``; Ascend adds Ray's built-in
        ``NPU`` resource and ``accelerator_type``. CPU work backfilling an accelerator pool asks
        for no accelerator.

    Example:
        >>> h100 = PoolShape("h100", "nvidia-h100", 32, 512, 8, 80)
        >>> ray_options(Requirements(accelerator="nvidia-h100"), h100, virtual=False)
        {'num_cpus': 1, 'resources': {'pool:h100': 1}, 'num_gpus': 1, 'accelerator_type': 'H100'}
    """
    resources: dict[str, float] = {pool_resource(pool.name): slots(req)}
    options: dict[str, Any] = {"num_cpus": req.cores, "resources": resources}
    ray_type = pool.ray_accelerator_type
    if virtual:
        if ray_type is not None:
            # What Ray's accelerator_type= option asks for, spelled out so nothing else is.
            resources[accelerator_resource(ray_type)] = 0.001
        return options
    if req.memory_gb is not None:
        options["memory"] = int(req.memory_gb * GIB)
    if req.accelerator is None or ray_type is None:
        return options
    vendor = accelerator_vendor(pool.accelerator)
    if vendor in ("nvidia", "amd"):
        options["num_gpus"] = req.accelerator_count
    elif vendor == "ascend":
        resources["NPU"] = req.accelerator_count
    options["accelerator_type"] = ray_type
    return options


@dataclass
class RayRuntime:
    """What the farm knows about the Ray it runs on."""

    address: str
    started_locally: bool
    virtual_pools: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def start_ray(
    *,
    address: str | None,
    pools: Sequence[PoolShape],
    num_cpus: int | None = None,
    object_store_memory: int | None = None,
) -> RayRuntime:
    """Join ``address``, or start a local Ray with every pool declared on this node.

    Embedded mode starts Ray on loopback with token auth off (``RAY_AUTH_MODE=disabled``): the
    local cluster is reachable only from this machine. A real cluster keeps Ray's default auth.
    Every pool gets ``pool:<name>`` = this machine's CPU count; accelerator pools also get
    ``accelerator_type:<X>`` and are *virtual* (listed in ``virtual_pools``): place their
    tiles with ``ray_options(..., virtual=True)``.
    """
    import ray

    if ray.is_initialized():
        return RayRuntime(address="existing", started_locally=False)
    if address:
        try:
            ray.init(
                address=address,
                logging_level=logging.WARNING,
                log_to_driver=False,
                runtime_env={"env_vars": WORKER_ENV},  # job-wide: every worker of this farm
            )
        except Exception as exc:
            raise Unavailable(f"cannot join the Ray cluster at {address}: {exc}") from exc
        return RayRuntime(address=address, started_locally=False)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cpus = num_cpus or os.cpu_count() or 1
    resources: dict[str, float] = {}
    notes: list[str] = []
    virtual: list[str] = []
    for pool in pools:
        resources[pool_resource(pool.name)] = float(cpus)
        ray_type = pool.ray_accelerator_type
        if ray_type is not None:
            resources[accelerator_resource(ray_type)] = 1.0
            virtual.append(pool.name)
            notes.append(
                f"pool '{pool.name}' ({ray_type}) is declared virtually through Ray custom "
                f"resources: this machine has no {ray_type}, so its tiles run on CPU here "
                "while placement logic runs unchanged"
            )
    ray.init(
        address="local",  # a new local Ray, never a cluster someone `ray start`ed on this machine
        num_cpus=cpus,
        num_gpus=0,
        resources=resources,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
        object_store_memory=object_store_memory,
        runtime_env={"env_vars": WORKER_ENV},
        _node_ip_address="127.0.0.1",
        _system_config=dict(KEEP_WARM_WORKERS),
    )
    return RayRuntime(address="local", started_locally=True, virtual_pools=virtual, notes=notes)


def pool_capacity() -> dict[str, float]:
    """Slots per pool in the whole cluster now (from Ray's resource view)."""
    import ray

    return {
        key.removeprefix("pool:"): value
        for key, value in ray.cluster_resources().items()
        if key.startswith("pool:")
    }


@dataclass(frozen=True)
class PoolView:
    """The alive Ray nodes of each pool, as one ``ray.nodes()`` call shows them."""

    nodes: dict[str, frozenset[str]]
    """Ray node ids per pool: where a tile that failed on one node may go instead."""
    devices: frozenset[str]
    """Pools with at least one node that has real devices (Ray's ``GPU`` or ``NPU``). An
    accelerator pool not in it is *virtual* (its nodes stand in on CPU, as the embedded farm
    and ``farm worker --virtual`` declare them): its tiles are placed with
    ``ray_options(..., virtual=True)``, since asking for ``num_gpus`` there pends forever."""
    memory_gb: dict[str, float]
    """The largest ``memory`` a node of each pool offers Ray, GiB: more than this pends
    forever, whatever the pools file promises."""
    shared: tuple[tuple[frozenset[str], int], ...] = ()
    """Pools whose nodes are also nodes of another pool, grouped, with the CPUs of those
    nodes: the embedded farm declares every pool on its one machine, so they share its cores."""


def pool_view() -> PoolView:
    """What the cluster's alive nodes offer, per pool."""
    import ray

    nodes: dict[str, set[str]] = {}
    devices: set[str] = set()
    memory: dict[str, float] = {}
    groups: list[tuple[set[str], float]] = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        resources = node.get("Resources", {})
        pools = [key.removeprefix("pool:") for key in resources if key.startswith("pool:")]
        if len(pools) > 1:
            groups.append((set(pools), float(resources.get("CPU", 0.0))))
        for pool in pools:
            nodes.setdefault(pool, set()).add(node["NodeID"])
            memory[pool] = max(memory.get(pool, 0.0), resources.get("memory", 0.0) / GIB)
            if resources.get("GPU", 0) or resources.get("NPU", 0):
                devices.add(pool)
    return PoolView(
        nodes={pool: frozenset(ids) for pool, ids in nodes.items()},
        devices=frozenset(devices),
        memory_gb=memory,
        shared=_merge(groups),
    )


def _merge(groups: list[tuple[set[str], float]]) -> tuple[tuple[frozenset[str], int], ...]:
    """Groups of pools that share nodes, merged where they overlap, with their CPUs summed."""
    merged: list[tuple[set[str], float]] = []
    for pools, cpus in groups:
        for other in [g for g in merged if g[0] & pools]:
            merged.remove(other)
            pools, cpus = pools | other[0], cpus + other[1]
        merged.append((pools, cpus))
    return tuple((frozenset(pools), int(cpus)) for pools, cpus in merged)


def avoid_selector(avoid: Sequence[str]) -> dict[str, str]:
    """Ray's label selector that keeps a task off the nodes ``avoid`` (node ids)."""
    return {"ray.io/node-id": f"!in({','.join(sorted(avoid))})"}

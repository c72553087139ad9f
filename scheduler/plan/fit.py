"""Which pools can ever run a layer's tiles, and why none can: pure, no Ray, no DB.

A tile *fits* a pool when one node of it holds the tile's :class:`~farm.vocab.Requirements`:
enough cores, memory, accelerators of the right kind and accelerator memory. Licences never
decide fit (they decide *when*, not *where*). The API refuses a layer that fits no pool at
submit, with :func:`unfit_reason`; the dispatcher places tiles on :func:`fitting_pools`.

Imports only :mod:`farm.vocab` and the standard library (``tests/unit/test_layering.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from farm.vocab import CPU_KIND, Requirements, ray_accelerator_type


@dataclass(frozen=True)
class PoolShape:
    """What one node of a pool holds. Memory in GiB; 0 means "not declared" and fits nothing.

    Built from :class:`farm.pool_config.PoolSpec` (``spec.shape``) or a ``pools`` row
    (:func:`farm.db.queries.pool_shapes`).
    """

    name: str
    accelerator: str
    """Accelerator kind, as the pools file says it: ``cpu``, ``nvidia-h100``, ``ascend-910b``."""
    cores_per_node: int
    memory_gb: float
    accelerators_per_node: int = 0
    accelerator_memory_gb: float = 0.0
    backfill: bool = False
    """CPU-only work may run on this accelerator pool's idle nodes."""

    @property
    def is_cpu(self) -> bool:
        return self.accelerator == CPU_KIND

    @property
    def ray_accelerator_type(self) -> str | None:
        """Ray's ``accelerator_type`` string (``H100``, ``Ascend910B``); None for a cpu pool."""
        return ray_accelerator_type(self.accelerator)


def slots(req: Requirements) -> int:
    """Pool slots one tile takes: a slot is one core, so a 4-core tile takes 4."""
    return req.cores


def memory_share(req: Requirements, pool: PoolShape) -> float:
    """Memory one tile of ``req`` may use on a node of ``pool``, GiB: what it asks for, else
    its slots' share of the node (a 4-core tile on a 32-core, 128 GiB node: 16 GiB).

    Example:
        >>> memory_share(Requirements(cores=4), PoolShape("cpu", "cpu", 32, 128))
        16.0
    """
    if req.memory_gb is not None:
        return float(req.memory_gb)
    return pool.memory_gb * min(slots(req), pool.cores_per_node) / pool.cores_per_node


def fitting_pools(
    req: Requirements, pools: Sequence[PoolShape], *, pool: str | None = None
) -> tuple[str, ...]:
    """The pools where one node can hold ``req``, most preferred first.

    Args:
        req: one tile's requirements.
        pools: the farm's pools; their order breaks ties (pass a stable order).
        pool: the pool the layer names. Only that pool is considered, backfill or not: an
            explicit choice is honoured whenever it fits.

    Returns:
        Named pool: ``(pool,)`` if it fits, else ``()``. CPU-only work: ``cpu`` pools, then
        accelerator pools that allow backfill. Accelerator work: pools of that kind with enough
        accelerators and accelerator memory. Empty when nothing fits (see :func:`unfit_reason`).

    Example:
        >>> cpu = PoolShape("cpu", "cpu", 32, 128)
        >>> gpu = PoolShape("h100", "nvidia-h100", 32, 512, 8, 80, backfill=True)
        >>> fitting_pools(Requirements(cores=4), [gpu, cpu])
        ('cpu', 'h100')
    """
    if pool is not None:
        named = [p for p in pools if p.name == pool]
        return (pool,) if named and _problem(req, named[0]) is None else ()
    fits = [p for p in _candidates(req, pools) if _problem(req, p) is None]
    return tuple(p.name for p in fits)


def unfit_reason(req: Requirements, pools: Sequence[PoolShape], *, pool: str | None = None) -> str:
    """Why no pool fits ``req``, in one sentence naming the blocking requirement.

    Returns ``""`` when a pool fits. Examples: ``no pool has accelerator nvidia-b200 (pools:
    cpu, h100, ascend)``, ``pool cpu has 32 cores per node; the layer needs 64``.
    """
    if fitting_pools(req, pools, pool=pool):
        return ""
    names = ", ".join(p.name for p in pools) or "none"
    if pool is not None:
        named = [p for p in pools if p.name == pool]
        if not named:
            return f"no pool named {pool} (pools: {names})"
        return _problem(req, named[0]) or ""
    candidates = _candidates(req, pools)
    if not candidates:
        if req.accelerator is not None:
            return f"no pool has accelerator {req.accelerator} (pools: {names})"
        return (
            "no pool takes CPU-only work: there is no cpu pool and no accelerator pool "
            f"allows backfill (pools: {names})"
        )
    for need, have, say, unit in _dimensions(req):
        if need is None:
            continue
        best = max(candidates, key=have)
        if have(best) < need:
            largest = f"{_num(have(best))}{unit} in pool {best.name}"
            return f"no node of any pool has {say(need)} (largest: {largest})"
    wanted = ", ".join(say(need) for need, _, say, _ in _dimensions(req) if need is not None)
    return f"no single pool has all of: {wanted} on one node (pools: {names})"


# ----------------------------------------------------------------------------- helpers
Dimension = tuple[float | None, Callable[[PoolShape], float], Callable[[float], str], str]
"""(needed or None, what a pool's node has, how to say the need, unit of the amount)."""


def _candidates(req: Requirements, pools: Sequence[PoolShape]) -> list[PoolShape]:
    """The pools of the right kind, in preference order (cpu pools before backfill ones)."""
    if req.accelerator is not None:
        return [p for p in pools if p.accelerator == req.accelerator]
    return [p for p in pools if p.is_cpu] + [p for p in pools if not p.is_cpu and p.backfill]


def _dimensions(req: Requirements) -> list[Dimension]:
    """One :data:`Dimension` per requirement, most telling first."""
    kind = req.accelerator or ""
    return [
        (
            float(req.accelerator_count) if req.accelerator else None,
            lambda p: float(p.accelerators_per_node),
            lambda n: f"{_num(n)} {kind} accelerators",
            "",
        ),
        (
            req.accelerator_memory_gb,
            lambda p: p.accelerator_memory_gb,
            lambda n: f"{_num(n)} GB of accelerator memory on {kind}",
            " GB",
        ),
        (float(req.cores), lambda p: float(p.cores_per_node), lambda n: f"{_num(n)} cores", ""),
        (req.memory_gb, lambda p: p.memory_gb, lambda n: f"{_num(n)} GB of memory", " GB"),
    ]


def _problem(req: Requirements, pool: PoolShape) -> str | None:
    """Why one node of ``pool`` cannot hold ``req`` (None when it can)."""
    if req.accelerator is not None and pool.accelerator != req.accelerator:
        return f"pool {pool.name} has no {req.accelerator} accelerators (it is {pool.accelerator})"
    if req.accelerator is not None and pool.accelerators_per_node < req.accelerator_count:
        return (
            f"pool {pool.name} has {pool.accelerators_per_node} {pool.accelerator} per node; "
            f"the layer needs {req.accelerator_count}"
        )
    need = req.accelerator_memory_gb
    if need is not None and pool.accelerator_memory_gb < need:
        return (
            f"pool {pool.name} has {_num(pool.accelerator_memory_gb)} GB of accelerator memory; "
            f"the layer needs {_num(need)}"
        )
    if pool.cores_per_node < req.cores:
        return (
            f"pool {pool.name} has {pool.cores_per_node} cores per node; "
            f"the layer needs {req.cores}"
        )
    if req.memory_gb is not None and pool.memory_gb < req.memory_gb:
        return (
            f"pool {pool.name} has {_num(pool.memory_gb)} GB of memory per node; "
            f"the layer needs {_num(req.memory_gb)}"
        )
    return None


def _num(value: float) -> str:
    """``80.0`` -> ``80``, ``0.5`` -> ``0.5``: amounts as a person writes them."""
    return f"{value:g}"

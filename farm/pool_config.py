"""The pools file (``farm.toml``): which pools the farm has, what one node of each holds, licences.

Read once at start-up (:func:`load_farm_config`); :func:`farm.db.queries.sync_pools` then writes
it to the ``pools`` and ``licences`` tables, which the API and the dispatcher read. Without a
file the farm uses :data:`DEFAULT_FARM_CONFIG`, the embedded farm's three pools. Every key is
described in ``docs/pools.md``; ``infra/farm.example.toml`` is a complete example.

A bad file stops start-up with one message naming the key, e.g.
``farm.toml: pools[1].cores_per_node: Input should be greater than or equal to 1``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from farm.errors import InvalidSpec, validation_message
from farm.vocab import CPU_KIND, AcceleratorKind, LicenceName, ray_accelerator_type
from scheduler.plan.fit import PoolShape

_POOL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class PoolSpec(BaseModel):
    """One pool: identical nodes of one accelerator kind, and what a node-hour costs.

    Memory is in GB of 2**30 bytes (GiB). ``cores_per_node`` is also the node's number of slots:
    a tile asking for 4 cores takes 4 slots.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_POOL_NAME, description="pool name; Ray resource pool:<name>")
    accelerator: AcceleratorKind = Field(
        default=CPU_KIND, description="cpu, nvidia-h100, ascend-910b, nvidia-a100, ..."
    )
    cores_per_node: int = Field(ge=1, le=4096, description="CPU cores (slots) per node")
    memory_gb: float = Field(gt=0, description="RAM per node, GiB")
    accelerators_per_node: int = Field(default=0, ge=0, le=64)
    accelerator_memory_gb: float = Field(default=0.0, ge=0, description="per accelerator, GiB")
    price_per_node_hour: float = Field(ge=0, description="what one node-hour costs")
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 code")
    backfill: bool = Field(
        default=False, description="CPU-only work may use idle nodes of this accelerator pool"
    )

    @model_validator(mode="after")
    def _accelerator_consistent(self) -> PoolSpec:
        if self.accelerator == CPU_KIND:
            if self.accelerators_per_node or self.accelerator_memory_gb:
                raise ValueError(
                    "accelerators_per_node: a cpu pool has no accelerators; set accelerator "
                    "to a kind such as 'nvidia-h100', or drop the accelerator keys"
                )
            if self.backfill:
                raise ValueError("backfill: only accelerator pools lend their nodes to CPU work")
        elif self.accelerators_per_node < 1:
            raise ValueError(
                f"accelerators_per_node: a {self.accelerator} pool needs at least 1 per node"
            )
        return self

    @property
    def ray_accelerator_type(self) -> str | None:
        """Ray's ``accelerator_type`` string (``H100``), None for a cpu pool."""
        return ray_accelerator_type(self.accelerator)

    @property
    def shape(self) -> PoolShape:
        """What the planner needs to know of one node (:mod:`scheduler.plan.fit`)."""
        return PoolShape(
            name=self.name,
            accelerator=self.accelerator,
            cores_per_node=self.cores_per_node,
            memory_gb=self.memory_gb,
            accelerators_per_node=self.accelerators_per_node,
            accelerator_memory_gb=self.accelerator_memory_gb,
            backfill=self.backfill,
        )


class StudioLimits(BaseModel):
    """What one studio may ask of the farm at once (``[limits]``, ``[limits.studios.NAME]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_job_frames: int = Field(default=100_000, ge=1, le=100_000, description="frames in one job")
    max_pending_tiles: int = Field(
        default=5_000_000,
        ge=1,
        description="tiles of the studio's unfinished jobs, this one included (base tiling)",
    )
    max_storage_gb: float | None = Field(
        default=None,
        gt=0,
        description="GiB of blobs the studio may hold (each blob it uploaded counted once, "
        "whoever else holds it too); None: no quota",
    )

    @property
    def max_storage_bytes(self) -> int | None:
        """``max_storage_gb`` in bytes (GiB of 2**30 bytes), None when there is no quota."""
        return None if self.max_storage_gb is None else int(self.max_storage_gb * (1 << 30))


class Limits(StudioLimits):
    """Farm-wide limits, with per-studio overrides by studio name."""

    studios: dict[str, StudioLimits] = Field(default_factory=dict)

    def of(self, studio: str) -> StudioLimits:
        """The limits that apply to ``studio``: the farm-wide ones, with the keys its own
        table sets replacing theirs (a key it leaves out keeps the farm-wide value)."""
        own = self.studios.get(studio)
        farm_wide = {name: getattr(self, name) for name in StudioLimits.model_fields}
        if own is None:
            return StudioLimits(**farm_wide)
        return StudioLimits(**{**farm_wide, **own.model_dump(exclude_unset=True)})


class FarmConfig(BaseModel):
    """The whole pools file: the pools (at least one, unique names) and licence counts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pools: tuple[PoolSpec, ...]
    licences: dict[LicenceName, int] = Field(
        default_factory=dict, description="name -> seats; ``houdini = 20`` or ``{ count = 20 }``"
    )
    limits: Limits = Field(default_factory=Limits)

    @field_validator("licences", mode="before")
    @classmethod
    def _count_tables(cls, value: Any) -> Any:
        """``houdini = { count = 20 }`` reads as ``houdini = 20`` (room for more keys later)."""
        if not isinstance(value, dict):
            return value
        out: dict[str, Any] = {}
        for name, entry in value.items():
            if isinstance(entry, dict):
                if set(entry) != {"count"}:
                    raise ValueError(f"{name}: give {{ count = N }} or just N")
                entry = entry["count"]
            out[name] = entry
        return out

    @model_validator(mode="after")
    def _unique_and_counted(self) -> FarmConfig:
        if not self.pools:
            raise ValueError("pools: declare at least one [[pools]] table")
        seen: set[str] = set()
        for i, pool in enumerate(self.pools):
            if pool.name in seen:
                raise ValueError(f"pools[{i}].name: pool {pool.name!r} is declared twice")
            seen.add(pool.name)
        for name, count in self.licences.items():
            if count < 0:
                raise ValueError(f"licences.{name}: count must be >= 0, got {count}")
        return self

    @property
    def shapes(self) -> tuple[PoolShape, ...]:
        """Every pool's node shape, in file order (the order fit prefers on ties)."""
        return tuple(p.shape for p in self.pools)


DEFAULT_FARM_CONFIG = FarmConfig(
    pools=(
        PoolSpec(
            name="cpu",
            accelerator="cpu",
            cores_per_node=32,
            memory_gb=128,
            price_per_node_hour=0.48,
        ),
        PoolSpec(
            name="h100",
            accelerator="nvidia-h100",
            cores_per_node=8,
            memory_gb=512,
            accelerators_per_node=8,
            accelerator_memory_gb=80,
            price_per_node_hour=9.80,
        ),
        PoolSpec(
            name="ascend",
            accelerator="ascend-910b",
            cores_per_node=8,
            memory_gb=512,
            accelerators_per_node=8,
            accelerator_memory_gb=64,
            price_per_node_hour=6.20,
        ),
    )
)
"""The embedded farm's pools when no pools file is given (prices in USD, no licences)."""


def parse_farm_config(text: str, *, source: str = "farm.toml") -> FarmConfig:
    """Parse the TOML text of a pools file.

    Raises:
        InvalidSpec: bad TOML or a bad key; the message starts with ``source`` and the key.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidSpec(f"{source}: not valid TOML: {exc}", field=source) from exc
    try:
        return FarmConfig.model_validate(raw)
    except ValidationError as exc:
        errors = [
            {**e, "msg": "unknown key; docs/pools.md lists the keys a pools file takes"}
            if e["type"] == "extra_forbidden"
            else e
            for e in exc.errors()
        ]
        message, field = validation_message(errors)
        raise InvalidSpec(f"{source}: {message}", field=field) from exc


def load_farm_config(path: Path | None) -> FarmConfig:
    """The pools file at ``path``, or :data:`DEFAULT_FARM_CONFIG` when ``path`` is None.

    Raises:
        InvalidSpec: the file cannot be read or a key is wrong (named in the message).
    """
    if path is None:
        return DEFAULT_FARM_CONFIG
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidSpec(f"{path}: cannot read the pools file: {exc.strerror}") from exc
    return parse_farm_config(text, source=path.name)

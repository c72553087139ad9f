"""The farm's vocabulary: enums and small constrained types shared by API, DB, scheduler and client.

Nesting, from the trade: studio > show > sequence > shot > job > layer > frame > tile, and
pool > node. Everything here is pure data: no I/O, no Ray, no SQLAlchemy.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_ID = 2**31 - 1
"""Largest id a database row can have (PostgreSQL's ``integer``, signed 32-bit): bigger numbers
are refused at the edge with a 422 naming the field, never sent to the database."""


class Role(StrEnum):
    """What a user of a studio may do."""

    ARTIST = "artist"
    """Submits and watches jobs of their studio."""
    TD = "td"
    """Pipeline TD: like an artist, plus scripted jobs and templates."""
    PRODUCER = "producer"
    """Reads cost reports and budgets; submits nothing."""
    ADMIN = "admin"
    """Manages the studio's users and pools."""
    OPERATOR = "operator"
    """Runs the farm: quotas, licences and rush for every studio (the only cross-studio role)."""


class LayerKind(StrEnum):
    """What a layer's work is; decides the executor that runs it."""

    PARTICLE_SIM = "particle_sim"
    """Advances a particle seed cache to each frame; one task per frame, writes a frame cache."""
    PARTICLE_RENDER = "particle_render"
    """Renders a particle cache with the built-in renderer; one task per tile."""
    ASSEMBLE = "assemble"
    """Crops and stitches a frame's tiles into one OpenEXR frame plus a PNG preview."""
    COMMAND = "command"
    """Runs an arbitrary command per frame (reserved: executor lands with OpenJD support)."""
    NOOP = "noop"
    """Does nothing and succeeds, per tile: a barrier between layers, a smoke test of a pool,
    and the unit of the dispatch benchmark (it measures the farm, not a renderer)."""


class Accelerator(StrEnum):
    """Accelerator of a pool, spelled as Ray spells it (``ray.util.accelerators``)."""

    NONE = "none"
    """Plain CPU nodes."""
    H100 = "H100"
    """NVIDIA H100 (``ray.util.accelerators.NVIDIA_H100``)."""
    ASCEND_910B = "Ascend910B"
    """Huawei Ascend 910B (``ray.util.accelerators.accelerators.HUAWEI_NPU_910B``)."""


ACCELERATOR_KIND_PATTERN = r"^[a-z0-9][a-z0-9-]{0,31}$"
"""An accelerator kind as pools declare it: lower case, vendor first (``nvidia-h100``)."""
CPU_KIND = "cpu"
"""The accelerator kind of pools of plain CPU nodes."""

AcceleratorKind = Annotated[str, Field(pattern=ACCELERATOR_KIND_PATTERN)]
"""``cpu``, ``nvidia-h100``, ``ascend-910b`` or any other ``vendor-model``: the farm's own words."""
LicenceName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
"""A licence counter's name (``houdini``): letters, digits, ``_ . -``."""

_KNOWN_RAY_TYPES: dict[str, Accelerator] = {
    CPU_KIND: Accelerator.NONE,
    "nvidia-h100": Accelerator.H100,
    "ascend-910b": Accelerator.ASCEND_910B,
}


def ray_accelerator_type(kind: str) -> str | None:
    """Ray's ``accelerator_type`` string for an accelerator kind; None for ``cpu``.

    Known kinds come from :class:`Accelerator`. Others follow Ray's spelling rules
    (``ray.util.accelerators``): NVIDIA and AMD models upper case (``nvidia-a100`` -> ``A100``),
    Ascend as ``Ascend`` + model (``ascend-910c`` -> ``Ascend910C``), anything else unchanged.

    Example:
        >>> ray_accelerator_type("nvidia-h100"), ray_accelerator_type("cpu")
        ('H100', None)
    """
    known = _KNOWN_RAY_TYPES.get(kind)
    if known is not None:
        return None if known is Accelerator.NONE else known.value
    vendor, _, model = kind.partition("-")
    if vendor in ("nvidia", "amd") and model:
        return model.upper()
    if vendor == "ascend" and model:
        return "Ascend" + model.upper()
    return kind


def accelerator_vendor(kind: str) -> str:
    """``cpu``, ``nvidia``, ``amd``, ``ascend`` or ``other``: which Ray resource counts it."""
    if kind == CPU_KIND:
        return CPU_KIND
    vendor = kind.partition("-")[0]
    return vendor if vendor in ("nvidia", "amd", "ascend") else "other"


class Requirements(BaseModel):
    """What one tile of a layer needs from one node; the farm picks a pool that has it.

    Memory is in GB of 2**30 bytes (GiB), as Ray and node specs count it. ``accelerator`` is a
    kind as the pools file declares it (``nvidia-h100``); with it, ``accelerator_count`` is at
    least 1. ``licences`` are counters (``houdini``) held while the tile runs, one of each.

    Example:
        >>> Requirements(cores=4, accelerator="nvidia-h100", accelerator_count=1).cores
        4
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    cores: int = Field(default=1, ge=1, le=4096, description="CPU cores (pool slots) per tile")
    memory_gb: float | None = Field(default=None, gt=0, description="RAM per tile, GiB")
    accelerator: AcceleratorKind | None = Field(
        default=None, description="accelerator kind, e.g. nvidia-h100; None: CPU only"
    )
    accelerator_count: int = Field(default=0, ge=0, le=64, description="accelerators per tile")
    accelerator_memory_gb: float | None = Field(
        default=None, gt=0, description="minimum memory of each accelerator, GiB"
    )
    licences: tuple[LicenceName, ...] = Field(default=(), description="licence counters held")

    @model_validator(mode="after")
    def _accelerator_consistent(self) -> Requirements:
        if self.accelerator == CPU_KIND:
            raise ValueError("accelerator: leave it out for CPU-only work instead of 'cpu'")
        if self.accelerator is None and (
            self.accelerator_count or self.accelerator_memory_gb is not None
        ):
            raise ValueError(
                "accelerator: accelerator_count and accelerator_memory_gb need an accelerator "
                "kind, e.g. 'nvidia-h100'"
            )
        if self.accelerator is not None and self.accelerator_count == 0:
            object.__setattr__(self, "accelerator_count", 1)  # asking for a kind means one
        if len(set(self.licences)) != len(self.licences):
            raise ValueError(f"licences: {list(self.licences)} names a licence twice")
        return self


class AOV(StrEnum):
    """Arbitrary output variables the particle renderer can write, with their EXR channel names."""

    RGBA = "rgba"
    """Premultiplied colour and alpha: channels R, G, B, A (half)."""
    Z = "z"
    """Camera depth of the nearest particle: channel Z (float); +inf where no particle."""
    ID = "id"
    """Front-most particle id + 1: channel ``id`` (uint); 0 where no particle."""
    VELOCITY = "velocity"
    """Screen-space motion in pixels per frame: ``velocity.X``, ``velocity.Y`` (float)."""


AOV_CHANNELS: dict[AOV, tuple[str, ...]] = {
    AOV.RGBA: ("R", "G", "B", "A"),
    AOV.Z: ("Z",),
    AOV.ID: ("id",),
    AOV.VELOCITY: ("velocity.X", "velocity.Y"),
}
"""EXR channel names written for each AOV, in file order."""


class Compression(StrEnum):
    """EXR compression of assembled frames. ZIP is the default: every reader here opens it."""

    NONE = "none"
    ZIP = "zip"
    ZIPS = "zips"
    PIZ = "piz"
    DWAA = "dwaa"
    DWAB = "dwab"


class ExrLayout(StrEnum):
    """How an assembled EXR stores its pixels."""

    SCANLINE = "scanline"
    TILED = "tiled"


class PixelRect(BaseModel):
    """A half-open pixel rectangle ``[x0, x1) x [y0, y1)`` in global frame coordinates.

    The origin is the top-left pixel of the display window; y grows downwards (as in EXR).
    Half-open bounds make tiling arithmetic exact: neighbours share an edge value, never a pixel.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    x0: int = Field(ge=0)
    y0: int = Field(ge=0)
    x1: int = Field(ge=0)
    y1: int = Field(ge=0)

    @model_validator(mode="after")
    def _not_empty(self) -> PixelRect:
        if self.x1 <= self.x0 or self.y1 <= self.y0:
            raise ValueError(f"empty rectangle {self.as_tuple()}: need x0 < x1 and y0 < y1")
        return self

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def area(self) -> int:
        return self.width * self.height

    def as_tuple(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)``, the form kernels and numpy slicing take."""
        return (self.x0, self.y0, self.x1, self.y1)

    def expand(self, margin: int, *, width: int, height: int) -> PixelRect:
        """This rectangle grown by ``margin`` px on every side, clipped to the image."""
        return PixelRect(
            x0=max(0, self.x0 - margin),
            y0=max(0, self.y0 - margin),
            x1=min(width, self.x1 + margin),
            y1=min(height, self.y1 + margin),
        )

    def contains(self, other: PixelRect) -> bool:
        return (
            self.x0 <= other.x0
            and self.y0 <= other.y0
            and other.x1 <= self.x1
            and other.y1 <= self.y1
        )

    def slices_within(self, outer: PixelRect) -> tuple[slice, slice]:
        """``(rows, cols)`` slices that cut this rectangle out of an array covering ``outer``."""
        return (
            slice(self.y0 - outer.y0, self.y1 - outer.y0),
            slice(self.x0 - outer.x0, self.x1 - outer.x0),
        )

"""The farm's vocabulary: enums and small constrained types shared by API, DB, scheduler and client.

Nesting, from the trade: studio > show > sequence > shot > job > layer > frame > tile, and
pool > node. Everything here is pure data: no I/O, no Ray, no SQLAlchemy.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_ID = 2**63 - 1
"""Largest id a database row can have (signed 64-bit): bigger numbers are refused at the edge."""


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


class Accelerator(StrEnum):
    """Accelerator of a pool, spelled as Ray spells it (``ray.util.accelerators``)."""

    NONE = "none"
    """Plain CPU nodes."""
    H100 = "H100"
    """NVIDIA H100 (``ray.util.accelerators.NVIDIA_H100``)."""
    ASCEND_910B = "Ascend910B"
    """Huawei Ascend 910B (``ray.util.accelerators.accelerators.HUAWEI_NPU_910B``)."""


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

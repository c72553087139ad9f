"""Pydantic 2 schemas at the API edge, shared unchanged by the API, the scheduler and the client.

Each entity has a family: ``XBase`` holds the fields once, ``XCreate`` is what a client sends,
``XOut`` adds ids and times and is read straight from the ORM row (``from_attributes``).
Incoming specs are strict (``extra="forbid"``, frozen) and carry ``spec_version``.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import WithJsonSchema

from farm.camera import Camera
from farm.states import TileState
from farm.vocab import (
    AOV,
    MAX_ID,
    Compression,
    ExrLayout,
    LayerKind,
    PixelRect,
    Requirements,
    Role,
)

MAX_FRAMES_PER_JOB = 100_000
"""More frames than any shot has: a typo like 1-1000000000 is refused before rows are written."""
MAX_TILES_PER_FRAME = 4096
"""A 64x64 grid: finer tiling costs more in dispatch than it saves in render time."""

SPEC_VERSION: Literal["delta/2026-11"] = "delta/2026-11"
"""The one job-spec version this farm reads; decoding lists the allowed values on a mismatch."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_name(value: str) -> str:
    """``value`` if it is a safe farm name (letters, digits, ``_ . -``), else ValueError."""
    if not _NAME.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return value


Name = Annotated[
    str,
    AfterValidator(check_name),
    # The rule as the OpenAPI shows it; check_name enforces it with a message that says why.
    WithJsonSchema({"type": "string", "pattern": _NAME.pattern, "minLength": 1, "maxLength": 64}),
]
"""A show, sequence, shot, layer, pool or asset name: safe in paths, URLs and Ray resource keys."""
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the bytes, hex")]
_ASSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)*$")
MAX_ASSET_NAME = 128


def check_asset_name(value: str) -> str:
    """``value`` if it is an asset name: farm names joined by ``/`` (``creatures/seamonster``)."""
    if len(value) > MAX_ASSET_NAME or not _ASSET_NAME.match(value):
        raise ValueError(
            f"{value!r} is not a valid asset name: use names of letters, digits, '_', '.' or "
            f"'-' (each starting with a letter or digit) joined by '/', at most "
            f"{MAX_ASSET_NAME} characters, e.g. 'creatures/seamonster'"
        )
    return value


AssetName = Annotated[
    str,
    AfterValidator(check_asset_name),
    WithJsonSchema(
        {"type": "string", "pattern": _ASSET_NAME.pattern, "minLength": 1, "maxLength": 128}
    ),
]
"""An asset's name in its show: folders of names, ``creatures/seamonster``."""


_STRICT = ConfigDict(extra="forbid", frozen=True)
_OUT = ConfigDict(from_attributes=True)


# ----------------------------------------------------------------------------- small value models
class FrameRange(BaseModel):
    """An inclusive frame range, as artists write it (``1001-1100``): ``last`` >= ``first``, at
    most 100,000 frames (``MAX_FRAMES_PER_JOB``)."""

    model_config = _STRICT
    first: int = Field(ge=0, description="first frame, inclusive")
    last: int = Field(ge=0, description="last frame, inclusive")

    @model_validator(mode="after")
    def _ordered(self) -> FrameRange:
        if self.last < self.first:
            raise ValueError(
                f"empty frame range {self.first}-{self.last}: 'last' must be >= 'first'"
            )
        if self.last - self.first + 1 > MAX_FRAMES_PER_JOB:
            raise ValueError(
                f"frame range {self.first}-{self.last} has {self.last - self.first + 1:,} frames; "
                f"a job may have at most {MAX_FRAMES_PER_JOB:,}: split it into several jobs"
            )
        return self

    def __iter__(self) -> Any:  # pragma: no cover - pydantic's own __iter__ is not wanted here
        return iter(range(self.first, self.last + 1))

    def __len__(self) -> int:
        return self.last - self.first + 1

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


class Resolution(BaseModel):
    """Display window size in pixels."""

    model_config = _STRICT
    width: int = Field(ge=1, le=16384)
    height: int = Field(ge=1, le=16384)


class TilingSpec(BaseModel):
    """How a render layer cuts each frame: a grid, a target tile size or balanced tiles.

    * ``cols`` and ``rows``: a fixed grid.
    * ``tile_width`` and ``tile_height``: tiles of about that size.
    * ``balanced``: that many tiles per frame, cut where the layer's measured cost divides
      evenly (equal areas until a tile has been measured). Pick about the number of slots a
      frame should use, or twice that: each tile then takes the same time, so the slots finish
      a frame together and the per-tile overhead is paid a few times, not hundreds.

    ``overscan`` is the margin rendered around each tile. ``target_runtime_s`` turns on adaptive
    grid or size tiles: after the first frames the planner splits tiles that ran over ~2x the
    target and merges cheap neighbours (like OpenJD's targetRuntimeSeconds).
    """

    model_config = _STRICT
    # Upper bounds: a frame has at most MAX_TILES_PER_FRAME tiles and 16384 px a side
    # (Resolution); the spec also checks the product and the image's own size.
    cols: int | None = Field(default=None, ge=1, le=MAX_TILES_PER_FRAME, description="grid columns")
    rows: int | None = Field(default=None, ge=1, le=MAX_TILES_PER_FRAME, description="grid rows")
    tile_width: int | None = Field(
        default=None, ge=1, le=16384, description="target tile width, px"
    )
    tile_height: int | None = Field(
        default=None, ge=1, le=16384, description="target tile height, px"
    )
    balanced: int | None = Field(
        default=None, ge=1, le=MAX_TILES_PER_FRAME, description="tiles of equal measured cost"
    )
    overscan: int = Field(default=8, ge=0, le=512, description="margin rendered around a tile, px")
    target_runtime_s: float | None = Field(default=None, gt=0, description="adaptive tiles")

    @model_validator(mode="after")
    def _one_way(self) -> TilingSpec:
        grid = self.cols is not None or self.rows is not None
        size = self.tile_width is not None or self.tile_height is not None
        balanced = self.balanced is not None
        if grid + size + balanced != 1:
            raise ValueError("give one of: cols and rows, tile_width and tile_height, or balanced")
        if grid and (self.cols is None or self.rows is None):
            raise ValueError("a grid needs both cols and rows")
        if size and (self.tile_width is None or self.tile_height is None):
            raise ValueError("a tile size needs both tile_width and tile_height")
        if balanced and self.target_runtime_s is not None:
            raise ValueError(
                "balanced tiles re-cut every frame from measured cost already: "
                "drop target_runtime_s, or use a grid or tile size with it"
            )
        return self


class OutputSpec(BaseModel):
    """How an assemble layer writes its frames."""

    model_config = _STRICT
    compression: Compression = Compression.ZIP
    layout: ExrLayout = ExrLayout.SCANLINE
    preview: bool = True
    zip_level: int = Field(
        default=1,
        ge=1,
        le=9,
        description="zlib level of ZIP and ZIPS frames: 1 writes fastest (the farm's default: "
        "a 1080p frame's write is the one serial step of a tiled frame, and takes about a "
        "quarter less time than at OpenEXR's own level 4, for a file about 5 % larger), "
        "9 smallest",
    )


# ----------------------------------------------------------------------------- job spec
class LayerSpec(BaseModel):
    """One layer of a job: what runs, on which pool, after which layers.

    Dependencies are frame by frame: frame f of this layer waits for frame f of every layer in
    ``depends_on``. That is what lets a frame assemble as soon as its own tiles are done.
    """

    model_config = _STRICT
    name: Name
    kind: LayerKind
    depends_on: tuple[Name, ...] = ()
    requirements: Requirements = Field(
        default=Requirements(), description="what one tile needs from one node"
    )
    pool: Name | None = Field(
        default=None,
        description="pool whose nodes run this layer's tiles; None: any pool that fits, "
        "the farm chooses",
    )
    department: str | None = Field(
        default=None, max_length=64, description="cost-report grouping; default from the kind"
    )
    input_asset_version: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ID,
        description="asset version id read by a sim (seed) or render (cache)",
    )
    tiles: TilingSpec | None = Field(default=None, description="particle_render only")
    aovs: tuple[AOV, ...] = Field(default=tuple(AOV), min_length=1)
    output: OutputSpec = OutputSpec()
    particles: int | None = Field(
        default=None, ge=1, description="particle_sim: informational particle count"
    )
    hold_s: float = Field(
        default=0.0,
        ge=0,
        le=3600,
        description="noop only: seconds each tile holds its slot (a stand-in for real work "
        "in dry runs and tests)",
    )
    execution: Literal["task", "session"] = Field(
        default="task",
        description="'task': each tile is a fresh stateless Ray task; 'session': tiles go to "
        "long-lived render sessions (Ray actors kept for the studio) that keep what they "
        "loaded between tiles and jobs (docs/architecture.md, render sessions)",
    )
    needs_memory_gb: float | None = Field(
        default=None,
        gt=0,
        le=65536,
        description="noop only, a fault drill: an attempt granted less memory (GiB) runs out "
        "of memory, so the farm's retry with more memory can be seen at work",
    )
    wait_for: Literal["frame", "layer"] = Field(
        default="frame",
        description="how it waits for the layers in depends_on: 'frame', frame f waits for "
        "frame f of each (a frame assembles as soon as its own tiles are done); 'layer', every "
        "frame waits for all of them to finish (an OpenJD step dependency)",
    )
    after_previous_frame: bool = Field(
        default=False,
        description="frame f also waits for this layer's frame f-1 (a simulation that steps "
        "from the previous frame's state)",
    )
    openjd_step: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="command layers: the step of the job's OpenJD template this layer runs, "
        "one task per frame (frame n is the step's n-th task)",
    )
    task_count: int | None = Field(
        default=None,
        ge=1,
        le=MAX_FRAMES_PER_JOB,
        description="command layers: how many tasks the step has (its frames are 1..task_count)",
    )

    @model_validator(mode="after")
    def _fits_kind(self) -> LayerSpec:
        if self.tiles is not None and self.kind not in TILED_KINDS:
            raise ValueError(
                f"'tiles' is only for particle_render and noop layers, not {self.kind}"
            )
        if self.kind is LayerKind.COMMAND and (self.openjd_step is None or not self.task_count):
            raise ValueError(
                "a command layer runs a step of an OpenJD template: submit the template "
                "(`farm submit TEMPLATE.yaml`, or studio_client.openjd), which sets openjd_step "
                "and task_count"
            )
        if self.kind is not LayerKind.COMMAND and (self.openjd_step or self.task_count):
            raise ValueError("'openjd_step' and 'task_count' are for command layers only")
        if self.name in self.depends_on:
            raise ValueError(f"layer {self.name!r} cannot depend on itself")
        if self.hold_s and self.kind is not LayerKind.NOOP:
            raise ValueError(f"'hold_s' is only for noop layers, not {self.kind}")
        if self.needs_memory_gb and self.kind is not LayerKind.NOOP:
            raise ValueError(f"'needs_memory_gb' is only for noop layers, not {self.kind}")
        return self

    @property
    def effective_department(self) -> str:
        """The department a cost report files this layer under."""
        return self.department or DEPARTMENT_BY_KIND[self.kind]


TILED_KINDS = frozenset({LayerKind.PARTICLE_RENDER, LayerKind.NOOP})
IMAGE_KINDS = frozenset({LayerKind.PARTICLE_SIM, LayerKind.PARTICLE_RENDER, LayerKind.ASSEMBLE})
"""Layer kinds that need the job's resolution and camera."""


class AssetWait(BaseModel):
    """Start a job only once asset ``asset_id`` has a published version >= ``min_version``
    (a lighting job waiting for a new version of the creature). The job records the version
    it started with."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    asset_id: int = Field(ge=1, le=MAX_ID)
    min_version: int = Field(default=1, ge=1, le=MAX_ID)


class OpenJDSubmit(BaseModel):
    """``POST /jobs/openjd``: an Open Job Description template to run in a shot, with the
    values of its job parameters (``farm submit TEMPLATE.yaml -p NAME=VALUE``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    shot_id: int = Field(ge=1, le=MAX_ID)
    template: str | dict[str, Any] = Field(
        description="the job template: YAML or JSON text, or the decoded object"
    )
    parameters: dict[str, str] = Field(
        default_factory=dict, description="job parameter values, NAME -> VALUE as text"
    )
    environments: tuple[str | dict[str, Any], ...] = Field(
        default=(), max_length=16, description="environment templates, applied in order"
    )
    name: Name | None = Field(default=None, description="default: the template's job name")
    priority: int = Field(default=50, ge=0, le=100)
    after_jobs: tuple[int, ...] = Field(default=(), max_length=64)
    after_assets: tuple[AssetWait, ...] = Field(default=(), max_length=16)


class OpenJDSource(BaseModel):
    """Where a job's command layers come from: an Open Job Description template (as decoded
    JSON), the job parameter values it was submitted with, and any environment templates.
    The workers rebuild the job from it with ``openjd-model``; nothing else is needed."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    template: dict[str, Any] = Field(description="the job template (jobtemplate-2023-09)")
    parameters: dict[str, str] = Field(
        default_factory=dict, description="job parameter values, as strings"
    )
    environments: tuple[dict[str, Any], ...] = Field(
        default=(), description="environment templates (environment-2023-09), in order"
    )


"""Layer kinds whose frames may be cut into tiles."""

DEPARTMENT_BY_KIND: dict[LayerKind, str] = {
    LayerKind.PARTICLE_SIM: "fx",
    LayerKind.PARTICLE_RENDER: "lighting",
    LayerKind.ASSEMBLE: "comp",
    LayerKind.COMMAND: "pipeline",
    LayerKind.NOOP: "pipeline",
}


_JOB_EXAMPLE: dict[str, Any] = {
    "spec_version": "delta/2026-11",
    "name": "sh0100_fx",
    "shot_id": 1,
    "frames": {"first": 1001, "last": 1100},
    "resolution": {"width": 1920, "height": 1080},
    "camera": {"position": [0.0, 0.0, 4.0], "look_at": [0.0, 0.0, 0.0]},
    "layers": [
        {"name": "sim", "kind": "particle_sim", "input_asset_version": 1},
        {
            "name": "render",
            "kind": "particle_render",
            "depends_on": ["sim"],
            "tiles": {"cols": 4, "rows": 4, "overscan": 8},
        },
        {"name": "comp", "kind": "assemble", "depends_on": ["render"]},
    ],
}
"""A seed simulated, rendered in 16 tiles and assembled: the OpenAPI's example (kept valid by
``tests/integration/test_api_contract.py``)."""


class JobSpec(BaseModel):
    """What a client submits: a shot's layers over a frame range at one resolution."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"examples": [_JOB_EXAMPLE]}
    )
    spec_version: Literal["delta/2026-11"] = SPEC_VERSION
    name: Name
    shot_id: int = Field(ge=1, le=MAX_ID)
    frames: FrameRange
    resolution: Resolution | None = Field(
        default=None, description="the image size (needed by particle and assemble layers)"
    )
    camera: Camera | None = Field(
        default=None, description="the render camera (needed by particle and assemble layers)"
    )
    layers: tuple[LayerSpec, ...] = Field(min_length=1)
    openjd: OpenJDSource | None = Field(
        default=None,
        description="the OpenJD template and parameter values its command layers' steps come "
        "from (set by `farm submit TEMPLATE.yaml`)",
    )
    after_jobs: tuple[Annotated[int, Field(ge=1, le=MAX_ID)], ...] = Field(
        default=(),
        max_length=64,
        description="ids of your studio's jobs that must be done before this one starts (one "
        "that fails or is cancelled cancels this one)",
    )
    after_assets: tuple[AssetWait, ...] = Field(
        default=(),
        max_length=16,
        description="asset versions to wait for: starts when each asset has a published "
        "version >= min_version",
    )
    priority: int = Field(
        default=50,
        ge=0,
        le=100,
        description="orders the studio's own work (higher first); never takes another "
        "studio's share",
    )

    @model_validator(mode="after")
    def _layers_consistent(self) -> JobSpec:
        names = [layer.name for layer in self.layers]
        seen: set[str] = set()
        for i, name in enumerate(names):
            if name in seen:
                raise ValueError(f"layers[{i}].name: duplicate layer name {name!r}")
            seen.add(name)
        for i, layer in enumerate(self.layers):
            makes_images = layer.kind in IMAGE_KINDS or layer.tiles is not None
            if makes_images and (self.resolution is None or self.camera is None):
                raise ValueError(
                    f"layers[{i}]: a {layer.kind} layer makes images: give the job a "
                    "'resolution' and a 'camera'"
                )
            if layer.kind is LayerKind.COMMAND and self.openjd is None:
                raise ValueError(
                    f"layers[{i}]: a command layer needs the job's 'openjd' template: submit "
                    "it with `farm submit TEMPLATE.yaml`"
                )
            for dep in layer.depends_on:
                if dep not in seen:
                    raise ValueError(
                        f"layers[{i}].depends_on: unknown layer {dep!r}; "
                        f"layers are {', '.join(names)}"
                    )
                if layer.wait_for == "frame" and self.layer_frames(
                    self.layer(dep)
                ) != self.layer_frames(layer):
                    raise ValueError(
                        f"layers[{i}].wait_for: 'frame' pairs frames of equal numbers, but "
                        f"layer {dep!r} has other frames; use wait_for 'layer'"
                    )
            if self.resolution is None:
                continue
            _check_tile_count(i, layer, self.resolution)
            if layer.tiles is not None and layer.tiles.cols is not None:
                if layer.tiles.cols > self.resolution.width:
                    raise ValueError(
                        f"layers[{i}].tiles.cols: {layer.tiles.cols} columns do not fit a "
                        f"{self.resolution.width} px wide image; use at most "
                        f"{self.resolution.width}"
                    )
                if layer.tiles.rows is not None and layer.tiles.rows > self.resolution.height:
                    raise ValueError(
                        f"layers[{i}].tiles.rows: {layer.tiles.rows} rows do not fit a "
                        f"{self.resolution.height} px high image; use at most "
                        f"{self.resolution.height}"
                    )
            _check_inputs(i, layer, [self.layer(dep).kind for dep in layer.depends_on])
        _check_acyclic(self.layers)
        return self

    def layer(self, name: str) -> LayerSpec:
        return next(layer for layer in self.layers if layer.name == name)

    def layer_frames(self, layer: LayerSpec) -> FrameRange:
        """The frames of ``layer``: the job's, or a command layer's tasks (1..task_count)."""
        if layer.task_count is not None:
            return FrameRange(first=1, last=layer.task_count)
        return self.frames

    @property
    def frame_count(self) -> int:
        """Frames of the longest layer (what a studio's frame limit counts)."""
        return max(len(self.layer_frames(layer)) for layer in self.layers)

    @property
    def tile_estimate(self) -> int:
        """Tiles the whole job will run (at its base tiling): what studio limits count."""
        return sum(
            len(self.layer_frames(layer))
            * (tiles_per_frame(layer, self.resolution) if self.resolution else 1)
            for layer in self.layers
        )


def tiles_per_frame(layer: LayerSpec, resolution: Resolution) -> int:
    """How many tiles one frame of ``layer`` is cut into (the base grid of adaptive tiling)."""
    tiling = layer.tiles
    if tiling is None:
        return 1
    if tiling.balanced is not None:
        return tiling.balanced
    if tiling.cols is not None and tiling.rows is not None:
        return tiling.cols * tiling.rows
    assert tiling.tile_width is not None and tiling.tile_height is not None
    cols = math.ceil(resolution.width / tiling.tile_width)
    return cols * math.ceil(resolution.height / tiling.tile_height)


def _check_inputs(i: int, layer: LayerSpec, upstream: list[LayerKind]) -> None:
    """What each layer kind reads must be there: a seed for a sim, a cache (an asset or a sim
    layer) and a tiling for a render, exactly one render for an assemble. Checked here, in the
    spec itself, so the SDK refuses such a spec before sending it; what needs the farm (the
    asset exists, is yours, holds the frames; a pool fits) is checked by
    :func:`farm.db.queries.submit_job`, once."""
    if layer.kind is LayerKind.PARTICLE_SIM and layer.input_asset_version is None:
        raise ValueError(
            f"layers[{i}].input_asset_version: a particle_sim layer needs an input asset "
            "version (its particle seed)"
        )
    if layer.kind is LayerKind.PARTICLE_RENDER:
        if layer.input_asset_version is None and LayerKind.PARTICLE_SIM not in upstream:
            raise ValueError(
                f"layers[{i}].input_asset_version: a particle_render layer needs an input "
                "asset version (a particle cache) or a dependency on a particle_sim layer"
            )
        if layer.tiles is None:
            raise ValueError(
                f"layers[{i}].tiles: a particle_render layer needs a tiling (cols and rows, "
                "tile_width and tile_height, or balanced)"
            )
    if layer.kind is LayerKind.ASSEMBLE and upstream.count(LayerKind.PARTICLE_RENDER) != 1:
        raise ValueError(
            f"layers[{i}].depends_on: an assemble layer stitches the tiles of exactly one "
            f"particle_render layer; it depends on {upstream.count(LayerKind.PARTICLE_RENDER)}"
        )


def _check_tile_count(i: int, layer: LayerSpec, resolution: Resolution) -> None:
    if layer.tiles is None or layer.tiles.balanced is not None:
        return  # one tile, or bounded by the field itself
    count = tiles_per_frame(layer, resolution)
    if count > MAX_TILES_PER_FRAME:
        raise ValueError(
            f"layers[{i}].tiles: {count:,} tiles per frame is more than the "
            f"{MAX_TILES_PER_FRAME:,} allowed; use fewer columns and rows or larger tiles"
        )


def _check_acyclic(layers: tuple[LayerSpec, ...]) -> None:
    deps = {layer.name: set(layer.depends_on) for layer in layers}
    done: set[str] = set()
    while deps:
        ready = [name for name, d in deps.items() if d <= done]
        if not ready:
            raise ValueError(f"layers: dependency cycle among {', '.join(sorted(deps))}")
        for name in ready:
            done.add(name)
            del deps[name]


# ---------------------------------------------------------------------- studios, shows, shots
class StudioOut(BaseModel):
    model_config = _OUT
    id: int
    name: str


class UserOut(BaseModel):
    model_config = _OUT
    id: int
    name: str
    role: Role
    studio_id: int


class ShowBase(BaseModel):
    name: Name
    title: str = Field(default="", max_length=200)


class ShowCreate(ShowBase):
    model_config = _STRICT


class ShowOut(ShowBase):
    model_config = _OUT
    id: int
    studio_id: int
    created_at: datetime


class ShotBase(BaseModel):
    name: Name
    sequence: Name = Field(description="sequence name; created on first use")


class ShotCreate(ShotBase):
    model_config = _STRICT


class ShotOut(ShotBase):
    model_config = _OUT
    id: int
    show_id: int
    created_at: datetime


# ----------------------------------------------------------------------------- assets
class AssetVersionCreate(BaseModel):
    """Register an already uploaded blob as the next version of a show's asset."""

    model_config = _STRICT
    asset: AssetName
    kind: Literal["particle_cache", "particle_seed", "scene", "texture", "other"] = "other"
    content_hash: Sha256


class AssetVersionOut(BaseModel):
    model_config = _OUT
    id: int
    asset_id: int
    asset: str
    kind: str
    version: int
    content_hash: str
    size_bytes: int
    created_at: datetime
    meta: dict[str, Any] | None = Field(
        default=None, description="what publishing checked (a particle cache: frames, particles)"
    )


class BlobOut(BaseModel):
    content_hash: str
    size_bytes: int
    created: bool = Field(description="false when your studio had already sent these bytes")


class MissingBlobsQuery(BaseModel):
    model_config = _STRICT
    hashes: list[Sha256] = Field(max_length=10000)


class MissingBlobsOut(BaseModel):
    missing: list[str]


# ----------------------------------------------------------------------------- jobs
class TileOut(BaseModel):
    model_config = _OUT
    index: int
    rect: PixelRect
    state: TileState
    rank: int = Field(default=0, description="dispatch position in its frame: slowest first")
    estimate_s: float | None = Field(
        default=None, description="seconds estimated from the layer's finished tiles, before it ran"
    )
    attempts: int
    reason: str
    pool: str | None
    node: str | None
    wall_seconds: float | None
    cpu_seconds: float | None
    log_hash: str | None = Field(
        default=None,
        description="sha256 of its last attempt's log (command layers): `farm log`, or "
        "GET /jobs/{job_id}/layers/{layer}/frames/{number}/tiles/{index}/log",
    )


class JobTileOut(TileOut):
    """A tile and where it belongs, as ``GET /jobs/{id}/tiles`` pages them."""

    id: int
    layer: str = Field(description="its layer's name")
    frame: int = Field(description="its frame number")


class FrameOut(BaseModel):
    model_config = _OUT
    number: int
    state: TileState
    tile_plan: str | None = Field(default=None, description="human form of the frame's plan")
    output_hash: str | None = Field(
        default=None,
        description="sha256 of the frame's file (an assembled OpenEXR), once written; download "
        "it from GET /jobs/{job_id}/layers/{layer}/frames/{number}/exr",
    )
    preview_hash: str | None = Field(
        default=None,
        description="sha256 of its PNG preview: GET .../frames/{number}/preview",
    )
    file_name: str | None = Field(
        default=None, description="the file's name (no folder): what `farm fetch` writes"
    )
    tile_counts: dict[TileState, int] = Field(
        default_factory=dict, description="its tiles by state (also when 'tiles' is left out)"
    )
    tiles: list[TileOut] = Field(
        description="every tile of the frame; empty with GET /jobs/{id}?tiles=false"
    )


class LayerOut(BaseModel):
    model_config = _OUT
    id: int
    name: str
    kind: LayerKind
    pool: str | None = Field(description="the pool the spec named; None: the farm chooses")
    requirements: Requirements = Requirements()
    depends_on: list[str]
    wait_for: Literal["frame", "layer"] = Field(
        default="frame", description="waits for depends_on frame by frame, or for all of it"
    )
    step: str | None = Field(default=None, description="the OpenJD step it runs (command layers)")
    state: TileState
    waiting: str = Field(default="", description="why its ready tiles wait, in words")
    tile_counts: dict[TileState, int]
    frame_counts: dict[TileState, int] = Field(
        default_factory=dict,
        description="its frames (an OpenJD step's tasks) by state, unwritten ones as waiting",
    )
    contact_sheet_hash: str | None = Field(
        default=None,
        description="sha256 of a PNG of its frames' previews, made when the job ends: GET "
        "/jobs/{job_id}/layers/{layer}/contact-sheet",
    )
    frames_total: int = Field(
        default=0, description="frames of the layer; those not in 'frames' yet are waiting"
    )
    frames: list[FrameOut]


class JobOut(BaseModel):
    model_config = _OUT
    id: int
    name: str
    shot_id: int
    state: TileState
    submitted_by: str
    created_at: datetime
    finished_at: datetime | None
    message: str = ""
    priority: int = 50
    rush: bool = False
    paused: bool = False
    dependencies_met: dict[str, Any] | None = Field(
        default=None,
        description="when the jobs and asset versions it waited for were there: 'at', and "
        "'assets' (asset id -> the version id it started with); None while it waits",
    )
    layers: list[LayerOut]


class JobSummary(BaseModel):
    model_config = _OUT
    id: int
    name: str
    shot_id: int
    state: TileState
    created_at: datetime
    priority: int = 50
    rush: bool = False
    paused: bool = False


class JobUpdate(BaseModel):
    """What the job's own studio may change after submitting (``PATCH /jobs/{id}``)."""

    model_config = _STRICT
    priority: int | None = Field(default=None, ge=0, le=100, description="0-100, higher first")


class RetryRequest(BaseModel):
    """Which failed or cancelled work to run again (``POST /jobs/{id}/retry``); all by default."""

    model_config = _STRICT
    layers: list[Name] | None = Field(
        default=None, max_length=64, description="only these layers (names); all when absent"
    )
    frames: list[Annotated[int, Field(ge=-1_000_000, le=1_000_000)]] | None = Field(
        default=None, max_length=MAX_FRAMES_PER_JOB, description="only these frame numbers"
    )


class JobCommandOut(BaseModel):
    """A pause, resume, cancel or retry: queued by the API, applied by the dispatcher."""

    model_config = _OUT
    id: int
    job_id: int
    action: Literal["pause", "resume", "cancel", "retry"]
    args: dict[str, Any]
    requested_by: str
    reason: str = Field(description="what the rule said when it was requested")
    created_at: datetime
    applied_at: datetime | None = Field(description="when the dispatcher applied it; None: queued")
    result: str = Field(description="what applying it did (tiles cancelled, retried, ...)")


class RushUpdate(BaseModel):
    """An operator marks a job rush (``POST /admin/jobs/{id}/rush``): it may preempt."""

    model_config = _STRICT
    rush: bool = True


# ----------------------------------------------------------------------------- pools and cost
class PoolOut(BaseModel):
    model_config = _OUT
    name: str
    accelerator: str = Field(description="Ray's accelerator_type (H100, Ascend910B) or none")
    accelerator_kind: str = Field(default="cpu", description="cpu, nvidia-h100, ascend-910b, ...")
    price_per_node_hour: float
    cpus_per_node: int = Field(description="cores per node; a slot is one core")
    memory_gb: float = 0.0
    accelerators_per_node: int = 0
    accelerator_memory_gb: float = 0.0
    backfill: bool = False
    currency: str


# ----------------------------------------------------------------------------- fair share
class QuotaBase(BaseModel):
    """A studio's share of one pool, in slots (a slot is one core).

    ``guarantee`` slots are the studio's whenever it has work; beyond that, idle slots go by
    ``weight``; ``ceiling`` caps what it may hold, borrowed slots included (None: no cap).
    """

    guarantee: int = Field(default=0, ge=0, le=1_000_000, description="slots always available")
    weight: float = Field(
        default=1.0, gt=0, le=1_000_000, allow_inf_nan=False, description="share beyond guarantee"
    )
    ceiling: int | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="most slots held (0: none of the pool; None: no cap)",
    )

    @model_validator(mode="after")
    def _ceiling_above_guarantee(self) -> QuotaBase:
        if self.ceiling is not None and self.ceiling < self.guarantee:
            raise ValueError(
                f"ceiling: {self.ceiling} is below the guarantee {self.guarantee}; "
                "raise the ceiling or lower the guarantee"
            )
        return self


class QuotaCreate(QuotaBase):
    model_config = _STRICT


class QuotaOut(QuotaBase):
    model_config = _OUT
    studio_id: int
    studio: str
    pool: str
    updated_at: datetime


class LicenceBase(BaseModel):
    """A named counter (``houdini``): ``count`` seats, some kept for studios by name."""

    count: int = Field(ge=0, le=1_000_000, description="seats in use at most")
    guarantees: dict[Name, int] = Field(
        default_factory=dict, description="studio name -> seats kept for it"
    )


class LicenceCreate(LicenceBase):
    """Checked on the way in only: the pools file may lower a count below stored guarantees."""

    model_config = _STRICT

    @model_validator(mode="after")
    def _guarantees_fit(self) -> LicenceCreate:
        for studio, seats in self.guarantees.items():
            if seats < 0:
                raise ValueError(f"guarantees.{studio}: {seats} seats; give 0 or more")
        if sum(self.guarantees.values()) > self.count:
            raise ValueError(
                f"guarantees: {sum(self.guarantees.values())} seats guaranteed, more than the "
                f"{self.count} there are"
            )
        return self


class LicenceOut(LicenceBase):
    name: str


class CostLine(BaseModel):
    """One row of a cost report: a group and what it cost."""

    key: str
    cost: float
    node_hours: float
    cpu_hours: float
    attempts: int


class CostReport(BaseModel):
    """What a show has cost so far, grouped the ways a producer asks."""

    show: str
    currency: str
    total: float
    node_hours: float
    by_shot: list[CostLine]
    by_department: list[CostLine]
    by_pool: list[CostLine]
    by_job: list[CostLine]


class FrameProblemOut(BaseModel):
    frame: int | None
    path: str = Field(description="the frame's file name (never where the farm keeps it)")
    problem: str


class FrameCheckOut(BaseModel):
    job_id: int
    frames_checked: int
    problems: list[FrameProblemOut]


# ----------------------------------------------------------------------------- errors
class ErrorOut(BaseModel):
    """The body of every error answer (rendered by :mod:`farm.api.errors`)."""

    error: str = Field(description="stable code: unauthenticated, forbidden, not_found, ...")
    message: str = Field(description="what happened and what to do next")
    field: str | None = Field(default=None, description="the offending field, when there is one")


# ----------------------------------------------------------------------------- API tokens
class TokenBase(BaseModel):
    name: Name = Field(description="what the token is for, e.g. laptop or ci")


class TokenCreate(TokenBase):
    model_config = _STRICT
    expires_in_days: int | None = Field(
        default=None, ge=1, le=3650, description="days until it stops working; None: never"
    )


class TokenOut(TokenBase):
    """A token as listings show it: never the secret, only its first characters."""

    model_config = _OUT
    id: int
    user_id: int
    user_name: str
    prefix: str | None = Field(description="delta_ and 4 characters; None for a legacy token")
    created_at: datetime
    last_used_at: datetime | None = Field(description="updated at most once a minute")
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    """A new token with its secret, which the farm shows in this answer only."""

    token: str = Field(description="the secret; store it now, the farm keeps only its hash")


# ----------------------------------------------------------------------------- lists
ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    """One page of a list, in a stable order (by id unless the route says otherwise).

    Pass ``next_cursor`` back as ``cursor`` for the next page; it is None on the last page.
    """

    model_config = _OUT
    items: list[ItemT]
    next_cursor: str | None = Field(
        description="opaque; send it as ?cursor= for the next page; None: no more pages"
    )


# ----------------------------------------------------------------------------- sharing
class AssetOut(BaseModel):
    """An asset your studio may read: its own, or one another studio shared with it.

    Experimental: may change.
    """

    model_config = _OUT
    id: int
    name: str
    kind: str
    show_id: int
    show: str
    studio: str = Field(description="the studio that owns it (another one when shared with you)")
    shared: bool = Field(description="true when another studio shared it with yours: read-only")
    latest: AssetVersionOut | None = Field(description="its newest version; None before any")


class ShareCreate(BaseModel):
    """Let another studio read a whole show of yours (every asset in it, later ones too) or
    one asset (every version), and use them as job inputs; never publish into them.

    Experimental: may change.
    """

    model_config = _STRICT
    studio: Name = Field(description="the studio to share with, by name")
    show_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="a show of yours")
    asset_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="an asset of yours")

    @model_validator(mode="after")
    def _one_subject(self) -> ShareCreate:
        if (self.show_id is None) == (self.asset_id is None):
            raise ValueError("show_id: give exactly one of show_id and asset_id")
        return self


class ShareOut(BaseModel):
    """A grant, as the studio that gave it and the studio that received it see it.

    Experimental: may change.
    """

    model_config = _OUT
    id: int
    grantor: str = Field(description="the studio that shared")
    grantee: str = Field(description="the studio it was shared with")
    show_id: int
    show: str = Field(description="the show shared, or the shared asset's show")
    asset_id: int | None = Field(description="None: the whole show")
    asset: str | None
    granted_by: str = Field(description="the grantor's user who shared it")
    created_at: datetime
    revoked_at: datetime | None


class ShareAuditOut(BaseModel):
    """One grant or revoke, as the audit log keeps it.

    Experimental: may change.
    """

    model_config = _OUT
    id: int
    share_id: int
    action: Literal["grant", "revoke"]
    grantor: str
    grantee: str
    show_id: int
    show: str
    asset_id: int | None
    asset: str | None
    user_name: str = Field(description="who did it (a user of the grantor)")
    created_at: datetime


# ----------------------------------------------------------------------------- manifests
MANIFEST_MAGIC = b'{"delta_manifest":'
"""How every manifest's canonical JSON begins (sorted keys put ``delta_manifest`` first): the
farm recognises a manifest blob by these bytes."""
MAX_MANIFEST_BYTES = 256 << 20
"""The largest manifest the farm reads (about two million files)."""
MAX_MANIFEST_PATH_BYTES = 4096
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_manifest_path(path: str) -> str:
    """``path`` if it is a normalised relative POSIX path, else ValueError saying why.

    Normalised: ``/`` between folders, no empty, ``.`` or ``..`` part, Unicode NFC (macOS hands
    out NFD names: the client normalises them), no NUL or other control character, no
    backslash (a folder separator on Windows, so such a path would mean two different trees).
    """
    import unicodedata

    if not path:
        raise ValueError("an empty path")
    if _CONTROL.search(path):
        raise ValueError(f"{path!r} holds a NUL or control character")
    if "\\" in path:
        raise ValueError(f"{path!r} holds a backslash: write '/' between folders")
    if path.startswith("/") or _DRIVE.match(path):
        raise ValueError(f"{path!r} is absolute: paths are relative to the tree's root")
    parts = path.split("/")
    if ".." in parts:
        raise ValueError(f"{path!r} escapes the tree's root ('..')")
    if "" in parts or "." in parts:
        raise ValueError(f"{path!r} is not normalised (an empty or '.' part)")
    if unicodedata.normalize("NFC", path) != path:
        raise ValueError(f"{path!r} is not Unicode NFC")
    if len(path.encode()) > MAX_MANIFEST_PATH_BYTES:
        raise ValueError(f"{path[:60]!r}...: longer than {MAX_MANIFEST_PATH_BYTES} bytes")
    return path


ManifestPath = Annotated[str, AfterValidator(check_manifest_path)]
"""A file's path in a manifest: relative, POSIX, normalised (:func:`check_manifest_path`)."""


class ManifestEntry(BaseModel):
    """One file of a directory version. Experimental: may change."""

    model_config = _STRICT
    hash: Sha256
    size: int = Field(ge=0, description="bytes")
    mode: int = Field(
        default=0o644, ge=0, le=0o777, description="permission bits (0o755 for an executable)"
    )


class Manifest(BaseModel):
    """A directory version: each file's normalised relative path -> hash, size and mode.

    Stored as a blob of canonical JSON (sorted keys, no whitespace, UTF-8), so one tree always
    has one manifest hash; an asset version pointing at that blob is a directory version.
    Refused: paths that escape the root, are absolute or hold NUL (:func:`check_manifest_path`),
    two paths that differ only in case (they would overwrite each other on macOS and Windows),
    and a path that is both a file and a folder. Folders are implied by their files: an empty
    folder is not recorded.

    Experimental: may change.
    """

    model_config = _STRICT
    delta_manifest: Literal["1"] = Field(
        default="1", description="the manifest format's spec version"
    )
    files: dict[ManifestPath, ManifestEntry]

    @model_validator(mode="after")
    def _no_clashes(self) -> Manifest:
        folded: dict[str, str] = {}
        for path in self.files:
            other = folded.setdefault(path.casefold(), path)
            if other != path:
                raise ValueError(
                    f"files: {other!r} and {path!r} differ only in case: they would be one "
                    "file on macOS and Windows; rename one"
                )
        folders = {
            "/".join(parts[:i])
            for parts in (key.split("/") for key in folded)
            for i in range(1, len(parts))
        }
        for key, path in folded.items():
            if key in folders:
                raise ValueError(f"files: {path!r} is both a file and a folder")
        return self

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files.values())

    @property
    def meta(self) -> dict[str, Any]:
        """What the asset version records of it: ``{"manifest": true, "files", "bytes"}``."""
        return {"manifest": True, "files": len(self.files), "bytes": self.total_bytes}

    def canonical_bytes(self) -> bytes:
        """The one serialisation whose sha256 is the version's hash."""
        import json

        return json.dumps(
            self.model_dump(mode="json"),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        ).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Read a manifest blob, refusing anything but a manifest's canonical JSON.

        Raises:
            InvalidSpec: not JSON, a duplicate path, a bad path or entry (named), or not in
                canonical form.
        """
        import json

        from pydantic import ValidationError

        from farm.errors import InvalidSpec

        def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            keys = [key for key, _ in pairs]
            if len(set(keys)) != len(keys):
                twice = next(key for key in keys if keys.count(key) > 1)
                raise InvalidSpec(f"manifest: {twice!r} appears twice", field="manifest")
            return dict(pairs)

        try:
            raw = json.loads(data.decode("utf-8"), object_pairs_hook=unique)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidSpec(f"manifest: not UTF-8 JSON ({exc})", field="manifest") from exc
        try:
            manifest = cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            message = str(first["msg"]).removeprefix("Value error, ")
            if "[key]" not in first["loc"]:  # a path's own error names the path already
                message = f"{'.'.join(str(part) for part in first['loc'])}: {message}"
            raise InvalidSpec(f"manifest: {message}", field="manifest") from exc
        if manifest.canonical_bytes() != data:
            raise InvalidSpec(
                "manifest: not in canonical form (sorted keys, no whitespace, UTF-8): write it "
                "with Manifest.canonical_bytes()",
                field="manifest",
            )
        return manifest


# ----------------------------------------------------------------------------- blob packs
PACK_MAX_BYTES = 16 << 20
"""The largest ``POST /blobs/pack`` body: small blobs travel many to a request."""
PACK_MAX_BLOBS = 10_000
PACK_MEDIA_TYPE = "application/vnd.delta.pack"
_PACK_HEADER_BYTES = 40


def encode_pack(blobs: list[tuple[str, bytes]]) -> bytes:
    """A pack body: per blob its 32-byte sha256 digest, its size as 8 bytes big-endian, then
    its bytes. Experimental: may change."""
    parts: list[bytes] = []
    for content_hash, data in blobs:
        parts += (bytes.fromhex(content_hash), len(data).to_bytes(8, "big"), data)
    return b"".join(parts)


def decode_pack(data: bytes) -> list[tuple[str, memoryview]]:
    """The ``(hash, bytes)`` a pack body claims to hold (the hashes still to be checked).

    Raises:
        InvalidSpec: a truncated frame, or more than :data:`PACK_MAX_BLOBS` blobs.
    """
    from farm.errors import InvalidSpec

    view = memoryview(data)
    blobs: list[tuple[str, memoryview]] = []
    at = 0
    while at < len(view):
        if len(blobs) == PACK_MAX_BLOBS:
            raise InvalidSpec(f"pack: more than {PACK_MAX_BLOBS:,} blobs", field="body")
        size = int.from_bytes(view[at + 32 : at + _PACK_HEADER_BYTES], "big")
        end = at + _PACK_HEADER_BYTES + size
        if at + _PACK_HEADER_BYTES > len(view) or end > len(view):
            raise InvalidSpec(
                f"pack: blob {len(blobs)} at byte {at:,} is cut short (each blob is a 32-byte "
                "sha256, an 8-byte big-endian size and that many bytes)",
                field="body",
            )
        blobs.append((view[at : at + 32].hex(), view[at + _PACK_HEADER_BYTES : end]))
        at = end
    return blobs


class BlobPackOut(BaseModel):
    """The blobs of a pack, in the order sent (each once). Experimental: may change."""

    blobs: list[BlobOut]


# ----------------------------------------------------------------------------- live events
class EventOut(BaseModel):
    """One entry of the farm's event stream (``GET /events``, ``GET /jobs/{id}/events``).

    Events of a studio come in ``id`` order, each once; resume after one with its id as
    ``Last-Event-ID`` (or ``?after=``). The dispatcher writes, per job and batch, in this
    order: ``job_control`` (a pause, resume, cancel or retry applied), ``tiles_planned``
    (``[tile id, layer, frame, index, x0, y0, x1, y1]`` of tiles born pending), ``tiles``
    (``[tile id, state, pool or node]``), ``frames`` (``[frame id, layer, number, state]``),
    ``layers`` (``[layer id, layer, state]``) and ``job_state`` (``{"state": ...}``), each list
    in the order the changes happened, and ``dependencies_met`` when a job's gates open. The
    API writes ``job_submitted``, ``job_priority``, ``job_rush`` and ``asset_published`` (no
    job). Frames start waiting and tiles pending, so replaying a job's events from the start
    gives every state it has now.

    Experimental: may change.
    """

    model_config = _OUT
    id: int = Field(description="increasing within the studio; pass it back as Last-Event-ID")
    job_id: int | None = Field(description="the job it is about; None for a studio event")
    kind: str = Field(description="what happened: see the schema's description")
    payload: dict[str, Any]
    created_at: datetime

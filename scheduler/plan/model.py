"""What the planner reads and what it answers: plain, frozen data (no Ray, no DB, no clock).

The dispatcher, the policy simulator (``scheduler.simulate``) and the tests build these same
objects, so all three see exactly the planner the farm runs.

Units: a *slot* is one core of a pool (a tile that needs 4 cores takes 4 slots); *usage* is
slot-seconds, exponentially decayed (``scheduler.plan.share.decayed_usage``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

TileKey = tuple[int, int, int, int]
"""``(frame, layer_position, rank, tile_id)``: a ready tile in its job's dispatch order.

Frame first, so frame 1's assemble goes before frame 2's render tiles (frames finish one after
another, as an artist watching dailies wants); inside a frame's layer, ``rank`` sends the
slowest estimated tiles first (``scheduler.tiles.dispatch_ranks``).
"""

StudioPool = tuple[int, str]
"""``(studio_id, pool)``: the key of quotas, running counts and usage."""


@dataclass(frozen=True, slots=True)
class Work:
    """The ready tiles of one layer of one job, all alike in what they need.

    Args:
        studio_id, job_id, layer_id: whose work it is.
        tiles: the ready tiles in dispatch order (see :data:`TileKey`); the planner takes
            from the front.
        pools: the pools where these tiles fit, in the order the farm prefers them (a layer
            that names its pool has just that one). Empty when nothing fits: ``unfit`` says why.
        priority: 0-100 inside the studio (higher first); never crosses studios.
        rush: an operator marked the job rush: first in its studio, and it may preempt work
            of studios over their share (see :func:`scheduler.plan.plan`).
        slots: slots one tile takes on its pool (its cores).
        licences: licences one running tile holds (one seat of each).
        accelerated: the tiles need an accelerator; CPU-only work may only backfill an
            accelerator pool behind accelerated work.
        unfit: why no pool fits, when ``pools`` is empty.
        tile_s: how long one of its tiles holds its slot, as measured so far (0: none has
            ended yet, so the planner assumes ``Policy.default_tile_s``).
    """

    studio_id: int
    job_id: int
    layer_id: int
    tiles: Sequence[TileKey]
    pools: tuple[str, ...]
    priority: int = 50
    rush: bool = False
    slots: int = 1
    licences: tuple[str, ...] = ()
    accelerated: bool = False
    unfit: str = ""
    tile_s: float = 0.0

    @property
    def key(self) -> tuple[int, int]:
        """``(job_id, layer_id)``: what the planner's reasons are keyed by."""
        return (self.job_id, self.layer_id)


@dataclass(frozen=True, slots=True)
class PoolState:
    """One pool as the planner sees it now.

    Args:
        capacity: slots the pool's live nodes have (0: no node offers the pool).
        free: slots that may be filled now (capacity, plus the short queue the dispatcher
            keeps so workers never wait, less what is in flight).
        accelerated: the pool's nodes carry accelerators.
        backfill: CPU-only work may use idle slots of this accelerator pool.
    """

    name: str
    capacity: int
    free: int
    accelerated: bool = False
    backfill: bool = False


@dataclass(frozen=True, slots=True)
class Quota:
    """A studio's terms on one pool. A studio without a quota gets ``Quota()``.

    Args:
        guarantee: slots the studio gets first whenever it has work there.
        weight: its share of what is left, relative to the other studios with work there.
        ceiling: at most this many slots in flight, however idle the pool (None: no limit).
    """

    guarantee: int = 0
    weight: float = 1.0
    ceiling: int | None = None


@dataclass(frozen=True, slots=True)
class Licence:
    """A named counter of seats (``houdini=20``) that running tiles hold; never exceeded.

    Args:
        total: seats in all.
        in_use: seats held now, per studio.
        guarantees: seats kept free for a studio while it has work that needs them.
    """

    total: int
    in_use: Mapping[int, int] = field(default_factory=dict)
    guarantees: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunningTile:
    """A tile in flight, as preemption sees it.

    ``started`` is any clock that grows (larger: younger); the youngest go first because they
    lose the least work.
    """

    tile_id: int
    studio_id: int
    pool: str
    started: float
    slots: int = 1
    rush: bool = False
    backfill: bool = False
    """It runs on an accelerator pool as CPU-only backfill."""


@dataclass(frozen=True, slots=True)
class Policy:
    """How the farm shares itself; the same for every tick of one farm.

    Args:
        half_life_s: how fast past usage is forgotten (Slurm's PriorityDecayHalfLife).
        max_preemptions: at most this many running tiles stopped per tick, so a rush job
            reclaims its share in steps instead of throwing away a whole pool's work at once.
        default_tile_s: the tile time assumed for work none of whose tiles has ended yet (see
            ``Work.tile_s``).
    """

    half_life_s: float = 3600.0
    max_preemptions: int = 8
    default_tile_s: float = 60.0

    def __post_init__(self) -> None:
        if not (self.half_life_s > 0 and self.default_tile_s > 0):
            raise ValueError(
                f"half_life_s and default_tile_s must be positive seconds, not "
                f"{self.half_life_s} and {self.default_tile_s}"
            )


@dataclass(frozen=True)
class Snapshot:
    """What the planner sees in one tick.

    Args:
        pending: ready work, one :class:`Work` per (job, layer).
        pools: every pool by name.
        running: slots in flight per ``(studio, pool)``.
        usage: decayed slot-seconds per ``(studio, pool)``.
        owed: what fair share promised, decayed the same way: the integral of each studio's
            entitlement (``Plan.entitled``) while it had work, with the same half-life as
            ``usage``. ``usage - owed`` is how far a studio ran ahead of its share lately.
        quotas: per ``(studio, pool)``; missing ones are ``Quota()``.
        licences: by name.
        running_tiles: the tiles in flight (read only where a rush or accelerated job waits).
        studio_names: for the reasons a person reads.
    """

    pending: Sequence[Work]
    pools: Mapping[str, PoolState]
    running: Mapping[StudioPool, int] = field(default_factory=dict)
    usage: Mapping[StudioPool, float] = field(default_factory=dict)
    owed: Mapping[StudioPool, float] = field(default_factory=dict)
    quotas: Mapping[StudioPool, Quota] = field(default_factory=dict)
    licences: Mapping[str, Licence] = field(default_factory=dict)
    running_tiles: Sequence[RunningTile] = ()
    studio_names: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    """Run ``tile_id`` (of ``job_id``'s layer ``layer_id``) on ``pool`` now."""

    tile_id: int
    pool: str
    job_id: int
    layer_id: int


@dataclass(frozen=True, slots=True)
class Preemption:
    """Stop ``tile_id`` on ``pool`` and put it back to pending (no attempt counted)."""

    tile_id: int
    pool: str
    reason: str


@dataclass
class Plan:
    """The planner's answer for one tick.

    Attributes:
        decisions: tiles to send now, in the order to send them.
        preemptions: running tiles to stop for a rush or accelerated job.
        waiting: for each (job, layer) that still has ready tiles after this tick, why they
            wait, in words a person understands.
        entitled: each studio's fair share of each pool it has work on, in slots.
    """

    decisions: list[Decision] = field(default_factory=list)
    preemptions: list[Preemption] = field(default_factory=list)
    waiting: dict[tuple[int, int], str] = field(default_factory=dict)
    entitled: dict[StudioPool, float] = field(default_factory=dict)

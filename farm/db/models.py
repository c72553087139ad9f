"""SQLAlchemy 2 tables, named like the schemas in :mod:`farm.schemas` so rows read out directly.

Integer primary keys keep bulk tile inserts cheap; studio isolation is enforced by every query
going through ``studio_id`` (see :mod:`farm.db.queries`), never by hiding ids.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from farm.db.types import UTCDateTime
from farm.states import TileState
from farm.vocab import PixelRect


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Studio(Base):
    __tablename__ = "studios"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(Base):
    """A person of a studio; their API tokens are :class:`ApiToken` rows."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    studio_id: Mapped[int] = mapped_column(ForeignKey("studios.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """sha256 of the token issued with the user (also an :class:`ApiToken` row). Authentication
    reads ``api_tokens`` only, so this is a record, never a credential; kept from revision 0001
    until its readers move to ``api_tokens``."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    studio: Mapped[Studio] = relationship()
    __table_args__ = (UniqueConstraint("studio_id", "name"),)


class ApiToken(Base):
    """A user's API token, stored only as the sha256 of the whole token (never the secret).

    ``prefix`` (``delta_`` and the first 4 random characters) is what listings show so people
    can tell their tokens apart; it is None for tokens issued before revision 0008.
    """

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    studio_id: Mapped[int] = mapped_column(ForeignKey("studios.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str | None] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """Updated at most once a minute (:data:`farm.db.queries.TOKEN_TOUCH_INTERVAL`)."""
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    user: Mapped[User] = relationship()

    @property
    def user_name(self) -> str:
        return self.user.name


class Show(Base):
    __tablename__ = "shows"
    id: Mapped[int] = mapped_column(primary_key=True)
    studio_id: Mapped[int] = mapped_column(ForeignKey("studios.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    __table_args__ = (UniqueConstraint("studio_id", "name"),)


class Sequence(Base):
    __tablename__ = "sequences"
    id: Mapped[int] = mapped_column(primary_key=True)
    show_id: Mapped[int] = mapped_column(ForeignKey("shows.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    __table_args__ = (UniqueConstraint("show_id", "name"),)


class Shot(Base):
    __tablename__ = "shots"
    id: Mapped[int] = mapped_column(primary_key=True)
    show_id: Mapped[int] = mapped_column(ForeignKey("shows.id"), index=True)
    sequence_id: Mapped[int] = mapped_column(ForeignKey("sequences.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sequence_row: Mapped[Sequence] = relationship()
    __table_args__ = (UniqueConstraint("show_id", "name"),)

    @property
    def sequence(self) -> str:
        return self.sequence_row.name


class Blob(Base):
    """Bytes in the asset store, by content hash. Shared storage, never shared visibility."""

    __tablename__ = "blobs"
    content_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    storage_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BlobGrant(Base):
    """A studio may use a blob because it uploaded those bytes itself (or they were shared)."""

    __tablename__ = "blob_grants"
    studio_id: Mapped[int] = mapped_column(ForeignKey("studios.id"), primary_key=True)
    content_hash: Mapped[str] = mapped_column(ForeignKey("blobs.content_hash"), primary_key=True)


class Asset(Base):
    __tablename__ = "assets"
    id: Mapped[int] = mapped_column(primary_key=True)
    studio_id: Mapped[int] = mapped_column(ForeignKey("studios.id"), index=True)
    show_id: Mapped[int] = mapped_column(ForeignKey("shows.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    __table_args__ = (UniqueConstraint("show_id", "name"),)


class AssetVersion(Base):
    """An immutable version of an asset: rows are inserted, never updated."""

    __tablename__ = "asset_versions"
    id: Mapped[int] = mapped_column(primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(ForeignKey("blobs.content_hash"))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    storage_key: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    meta: Mapped[dict[str, Any] | None] = mapped_column(
        JSON,
        nullable=True,
        doc="what was checked when it was published (a particle cache: its frames, particles)",
    )
    asset_row: Mapped[Asset] = relationship()
    __table_args__ = (UniqueConstraint("asset_id", "version"),)

    @property
    def asset(self) -> str:
        return self.asset_row.name

    @property
    def kind(self) -> str:
        return self.asset_row.kind


class Pool(Base):
    """Nodes of one kind; tiles ask Ray for the custom resource ``pool:<name>``.

    Rows mirror the pools file (:mod:`farm.pool_config`), synced at start-up by
    :func:`farm.db.queries.sync_pools`. ``accelerator`` is Ray's string (``H100``, or ``none``),
    ``accelerator_kind`` the farm's own (``nvidia-h100``, ``cpu``).
    """

    __tablename__ = "pools"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    accelerator: Mapped[str] = mapped_column(String(32))
    price_per_node_hour: Mapped[float] = mapped_column(Float)
    cpus_per_node: Mapped[int] = mapped_column(
        Integer, default=1, doc="the pools file's cores_per_node: a slot is one core"
    )
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    accelerator_kind: Mapped[str] = mapped_column(String(32), default="cpu", server_default="cpu")
    memory_gb: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    accelerators_per_node: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    accelerator_memory_gb: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    backfill: Mapped[bool] = mapped_column(
        Boolean,
        default=False,
        server_default=false(),
        doc="CPU-only work may run on idle nodes of this accelerator pool",
    )


class Quota(Base):
    """A studio's share of one pool, in slots: guaranteed, weighted beyond, capped at a ceiling.

    A studio without a row has weight 1, no guarantee and no ceiling (issue 19).
    """

    __tablename__ = "quotas"
    studio_id: Mapped[int] = mapped_column(ForeignKey("studios.id"), primary_key=True)
    pool: Mapped[str] = mapped_column(
        ForeignKey("pools.name", ondelete="CASCADE"), primary_key=True
    )
    guarantee: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    weight: Mapped[float] = mapped_column(Float, default=1.0, server_default="1")
    ceiling: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    studio_row: Mapped[Studio] = relationship()

    @property
    def studio(self) -> str:
        return self.studio_row.name


class Licence(Base):
    """A named counter (``houdini``) that running tiles hold one of each; never exceeded."""

    __tablename__ = "licences"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    guarantees: Mapped[list[LicenceGuarantee]] = relationship(
        order_by="LicenceGuarantee.studio_id", cascade="all, delete-orphan"
    )


class LicenceGuarantee(Base):
    """Seats of a licence kept for one studio while it has work that needs them."""

    __tablename__ = "licence_guarantees"
    licence: Mapped[str] = mapped_column(
        ForeignKey("licences.name", ondelete="CASCADE"), primary_key=True
    )
    studio_id: Mapped[int] = mapped_column(ForeignKey("studios.id"), primary_key=True)
    guarantee: Mapped[int] = mapped_column(Integer)
    studio_row: Mapped[Studio] = relationship()


class FairShareUsage(Base):
    """A studio's recent use of a pool in slot-seconds, exponentially decayed.

    The dispatcher keeps it (``usage_slot_s`` as of ``updated_at``) so fairness survives a
    restart; decay to *now* before comparing two rows.
    """

    __tablename__ = "fair_share_usage"
    studio_id: Mapped[int] = mapped_column(ForeignKey("studios.id"), primary_key=True)
    pool: Mapped[str] = mapped_column(String(64), primary_key=True)
    usage_slot_s: Mapped[float] = mapped_column(Float, default=0.0)
    owed_slot_s: Mapped[float] = mapped_column(
        Float, default=0.0, server_default="0", doc="decayed integral of its fair share"
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    studio_id: Mapped[int] = mapped_column(ForeignKey("studios.id"), index=True)
    show_id: Mapped[int] = mapped_column(ForeignKey("shows.id"), index=True)
    shot_id: Mapped[int] = mapped_column(ForeignKey("shots.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default=TileState.WAITING, index=True)
    message: Mapped[str] = mapped_column(Text, default="")
    dependencies_met: Mapped[dict[str, Any] | None] = mapped_column(
        JSON,
        nullable=True,
        doc="when its after_jobs and after_assets were met, and the asset versions it used",
    )
    submitted_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    priority: Mapped[int] = mapped_column(
        Integer, default=50, server_default="50", doc="0-100: orders the studio's own work"
    )
    rush: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), doc="set by an operator; may preempt"
    )
    paused: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), doc="nothing new is dispatched"
    )
    tile_estimate: Mapped[int] = mapped_column(
        BigInteger, default=0, server_default="0", doc="tiles at its base tiling (studio limits)"
    )
    layers: Mapped[list[Layer]] = relationship(order_by="Layer.position")


class JobCommand(Base):
    """A user's pause, resume, cancel or retry, queued for the dispatcher (the only writer of
    tile states), which applies it on its next tick and stamps ``applied_at`` and ``result``."""

    __tablename__ = "job_commands"
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    studio_id: Mapped[int] = mapped_column(ForeignKey("studios.id"))
    action: Mapped[str] = mapped_column(String(16))
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    requested_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    result: Mapped[str] = mapped_column(Text, default="", server_default="")


class Layer(Base):
    __tablename__ = "layers"
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    pool: Mapped[str | None] = mapped_column(
        ForeignKey("pools.name"), nullable=True, doc="the pool the spec names; None: any that fits"
    )
    requirements: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=dict, doc="farm.vocab.Requirements of one tile, as JSON"
    )
    depends_on: Mapped[list[Any]] = mapped_column(JSON)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    tile_times: Mapped[list[Any]] = mapped_column(
        JSON, default=list, doc="measured [x0, y0, x1, y1, seconds] per finished tile"
    )
    frames_created: Mapped[int | None] = mapped_column(
        Integer,
        nullable=True,
        doc="frame rows written so far, from the first (None: all); the dispatcher writes the "
        "rest as it reaches them, so a 100,000-frame job is stored in milliseconds",
    )
    reason: Mapped[str] = mapped_column(
        Text, default="", server_default="", doc="why its ready tiles wait (the planner's words)"
    )
    contact_sheet_hash: Mapped[str | None] = mapped_column(
        String(64), nullable=True, doc="a PNG of its frames' previews, drawn when the job ends"
    )
    frames: Mapped[list[Frame]] = relationship(order_by="Frame.number")


class Frame(Base):
    __tablename__ = "frames"
    id: Mapped[int] = mapped_column(primary_key=True)
    layer_id: Mapped[int] = mapped_column(ForeignKey("layers.id"), index=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default=TileState.WAITING)
    tile_plan: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    output_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    output_path: Mapped[str | None] = mapped_column(
        Text, nullable=True, doc="where the assembling node wrote it (the farm's own; never served)"
    )
    preview_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    preview_hash: Mapped[str | None] = mapped_column(
        String(64), nullable=True, doc="its PNG preview as a blob (downloaded through the API)"
    )
    cost_preview: Mapped[list[Any] | None] = mapped_column(
        JSON, nullable=True, doc="sim frames: where the render work lies on screen (rows)"
    )
    tiles: Mapped[list[Tile]] = relationship(order_by="Tile.index")
    __table_args__ = (UniqueConstraint("layer_id", "number"),)


class Tile(Base):
    """The unit of work. A layer that is not tiled has one tile per frame covering the frame."""

    __tablename__ = "tiles"
    id: Mapped[int] = mapped_column(primary_key=True)
    frame_id: Mapped[int] = mapped_column(
        ForeignKey("frames.id"), doc="found through the unique (frame_id, index) key"
    )
    layer_id: Mapped[int] = mapped_column(ForeignKey("layers.id"), index=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    rank: Mapped[int] = mapped_column(
        Integer,
        default=0,
        server_default="0",
        doc="dispatch position in the frame: slowest estimate first",
    )
    estimate_s: Mapped[float | None] = mapped_column(
        Float, nullable=True, doc="seconds estimated from the layer's measured tiles"
    )
    x0: Mapped[int] = mapped_column(Integer)
    y0: Mapped[int] = mapped_column(Integer)
    x1: Mapped[int] = mapped_column(Integer)
    y1: Mapped[int] = mapped_column(Integer)
    render_rect: Mapped[list[Any]] = mapped_column(JSON, doc="[x0, y0, x1, y1] with overscan")
    state: Mapped[str] = mapped_column(String(16), default=TileState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    preemptions: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0", doc="times killed to reclaim; never an attempt"
    )
    forgiven: Mapped[int] = mapped_column(
        Integer,
        default=0,
        server_default="0",
        doc="attempts that do not count against max_attempts (node lost, bad input, user retry)",
    )
    node_id: Mapped[str | None] = mapped_column(
        String(64), nullable=True, doc="Ray node id of the last attempt"
    )
    avoid_nodes: Mapped[list[Any] | None] = mapped_column(
        JSON, nullable=True, doc="Ray node ids this tile failed on: its retries go elsewhere"
    )
    memory_gb: Mapped[float | None] = mapped_column(
        Float, nullable=True, doc="memory its next attempt asks for, after it ran out of memory"
    )
    log_hash: Mapped[str | None] = mapped_column(
        String(64), nullable=True, doc="its last attempt's log (a command's stdout and stderr)"
    )
    reason: Mapped[str] = mapped_column(Text, default="")
    pool: Mapped[str | None] = mapped_column(String(64), nullable=True)
    node: Mapped[str | None] = mapped_column(String(64), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    wall_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    cpu_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    output_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # No index on state: the dispatcher changes thousands of states a tick, and an indexed
    # column makes each change rewrite the index (migration 0011).
    __table_args__ = (UniqueConstraint("frame_id", "index"),)

    @property
    def rect(self) -> PixelRect:
        return PixelRect(x0=self.x0, y0=self.y0, x1=self.x1, y1=self.y1)

    @property
    def render_pixels(self) -> PixelRect:
        """The rectangle actually rendered: ``rect`` grown by the overscan, clipped to the image."""
        x0, y0, x1, y1 = self.render_rect
        return PixelRect(x0=x0, y0=y0, x1=x1, y1=y1)


class UsageRecord(Base):
    """One attempt of one tile on one pool: what cost reports and budgets add up.

    Only ``tile_id`` is a foreign key: the job, studio, show, shot and layer are copies of the
    tile's own chain, written from it by the dispatcher for the cost report's grouping. This is
    the farm's busiest insert (thousands a tick at farm scale), and a key on each copy made
    PostgreSQL check five more rows per insert (migration 0012).
    """

    __tablename__ = "usage_records"
    id: Mapped[int] = mapped_column(primary_key=True)
    tile_id: Mapped[int] = mapped_column(ForeignKey("tiles.id"))
    job_id: Mapped[int] = mapped_column(Integer, index=True)
    studio_id: Mapped[int] = mapped_column(Integer, index=True)
    show_id: Mapped[int] = mapped_column(Integer, index=True)
    shot_id: Mapped[int] = mapped_column(Integer)
    layer_id: Mapped[int] = mapped_column(Integer)
    department: Mapped[str] = mapped_column(String(64))
    pool: Mapped[str] = mapped_column(String(64))
    node: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    node_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    succeeded: Mapped[bool] = mapped_column(default=True)
    wall_seconds: Mapped[float] = mapped_column(Float)
    cpu_seconds: Mapped[float] = mapped_column(Float)
    node_hours: Mapped[float] = mapped_column(Float)
    cost: Mapped[float] = mapped_column(Float)
    currency: Mapped[str] = mapped_column(String(3))
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    __table_args__ = (UniqueConstraint("tile_id", "attempt", name="uq_usage_tile_attempt"),)


class Event(Base):
    """The farm's one event stream: every state change batch appends here (SSE reads it later)."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(primary_key=True)
    studio_id: Mapped[int] = mapped_column(ForeignKey("studios.id"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), index=True, nullable=True)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


@event.listens_for(Event, "before_insert")
def _lock_studio_events(_mapper: Any, connection: Any, target: Event) -> None:
    """Every ORM insert of an event takes its studio's event lock first, wherever it is made:
    ids must commit in order for readers resuming after one (see :mod:`farm.db.events`)."""
    from farm.db.events import lock_studios

    lock_studios(connection, [target.studio_id])


class _ShareNames:
    """The names a share or an audit row is read by (its columns hold ids)."""

    if TYPE_CHECKING:
        grantor_row: Studio
        grantee_row: Studio
        show_row: Show
        asset_row: Asset | None

    @property
    def grantor(self) -> str:
        return self.grantor_row.name

    @property
    def grantee(self) -> str:
        return self.grantee_row.name

    @property
    def show(self) -> str:
        return self.show_row.name

    @property
    def asset(self) -> str | None:
        return None if self.asset_row is None else self.asset_row.name


class Share(_ShareNames, Base):
    """Studio ``grantor`` lets studio ``grantee`` read a whole show (``asset_id`` None: every
    asset in it, those published later too) or one asset of it (every version), until revoked.

    The grantee may read, and use as job inputs, what is shared; never publish into it or
    submit into the show (:mod:`farm.db.sharing` holds the rule). Rows are never deleted: a
    revoke stamps ``revoked_at``, and :class:`ShareAudit` keeps who did what when.
    """

    __tablename__ = "shares"
    id: Mapped[int] = mapped_column(primary_key=True)
    grantor_studio_id: Mapped[int] = mapped_column(ForeignKey("studios.id"), index=True)
    grantee_studio_id: Mapped[int] = mapped_column(ForeignKey("studios.id"), index=True)
    show_id: Mapped[int] = mapped_column(
        ForeignKey("shows.id"), index=True, doc="the show shared, or the shared asset's show"
    )
    asset_id: Mapped[int | None] = mapped_column(
        ForeignKey("assets.id"), index=True, nullable=True, doc="None: the whole show"
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    grantor_row: Mapped[Studio] = relationship(foreign_keys=[grantor_studio_id])
    grantee_row: Mapped[Studio] = relationship(foreign_keys=[grantee_studio_id])
    show_row: Mapped[Show] = relationship()
    asset_row: Mapped[Asset | None] = relationship()
    creator: Mapped[User] = relationship(foreign_keys=[created_by])

    @property
    def granted_by(self) -> str:
        return self.creator.name


class ShareAudit(_ShareNames, Base):
    """One grant or revoke of a :class:`Share`: appended in the same transaction, never changed.

    The subject and both studios are copied from the share so that a row reads on its own.
    """

    __tablename__ = "share_audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    share_id: Mapped[int] = mapped_column(ForeignKey("shares.id"), index=True)
    action: Mapped[str] = mapped_column(String(16), doc="grant or revoke")
    grantor_studio_id: Mapped[int] = mapped_column(ForeignKey("studios.id"), index=True)
    grantee_studio_id: Mapped[int] = mapped_column(ForeignKey("studios.id"), index=True)
    show_id: Mapped[int] = mapped_column(ForeignKey("shows.id"))
    asset_id: Mapped[int | None] = mapped_column(ForeignKey("assets.id"), nullable=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), doc="who granted or revoked")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    grantor_row: Mapped[Studio] = relationship(foreign_keys=[grantor_studio_id])
    grantee_row: Mapped[Studio] = relationship(foreign_keys=[grantee_studio_id])
    show_row: Mapped[Show] = relationship()
    asset_row: Mapped[Asset | None] = relationship()
    user: Mapped[User] = relationship()

    @property
    def user_name(self) -> str:
        return self.user.name

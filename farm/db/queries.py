"""Reads and writes the API needs, each scoped to one studio.

Every function that takes a ``studio_id`` returns only that studio's rows: another studio's
show, shot, job or blob raises :class:`NotFound` exactly as a missing one would, so nothing
reveals that it exists.
"""

from __future__ import annotations

from collections import Counter
from pathlib import PurePath
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from farm import schemas
from farm.db import models as m
from farm.db.frames import FRAMES_AT_SUBMIT, insert_frames, uncreated
from farm.db.paging import PageRequest, Rows, keyset_page
from farm.db.pools import pool_shapes, sync_pools
from farm.db.sharing import readable_show, readable_version
from farm.db.tokens import add_token, hash_token, new_token
from farm.errors import Conflict, InvalidSpec, NotFound
from farm.pool_config import DEFAULT_FARM_CONFIG, Limits
from farm.states import TERMINAL, TileState, rollup
from farm.storage import BlobStore
from farm.vocab import LayerKind, Requirements, Role
from scheduler.plan.fit import PoolShape, fitting_pools, unfit_reason


# ----------------------------------------------------------------------------- studios and users
def create_studio(session: Session, name: str) -> m.Studio:
    """A new studio; its name becomes a folder of the outputs, so it must be a plain name."""
    try:
        schemas.check_name(name)
    except ValueError as exc:
        raise InvalidSpec(f"studio name: {exc}", field="name") from exc
    if session.scalar(select(m.Studio).where(m.Studio.name == name)) is not None:
        raise Conflict(f"studio {name!r} already exists; pick another name")
    studio = m.Studio(name=name)
    session.add(studio)
    session.flush()
    return studio


def create_user(session: Session, studio: m.Studio, name: str, role: Role) -> tuple[m.User, str]:
    """Create a user and return it with its first API token (shown once, stored hashed)."""
    taken = f"user {name!r} already exists in studio {studio.name!r}"
    # Asked first: a failed INSERT would leave the caller's transaction unusable, and the
    # user would read SQLAlchemy's complaint about it instead of this line.
    if session.scalar(select(m.User.id).where(m.User.studio_id == studio.id, m.User.name == name)):
        raise Conflict(taken)
    token = new_token()
    user = m.User(studio_id=studio.id, name=name, role=role.value, token_hash=hash_token(token))
    try:
        with session.begin_nested():  # another admin may add the same name meanwhile
            session.add(user)
    except IntegrityError as exc:
        raise Conflict(taken) from exc
    add_token(session, user, "initial", token)
    return user, token


# ----------------------------------------------------------------------------- pools
def ensure_default_pools(session: Session) -> None:
    """Sync the embedded default pools (:data:`farm.pool_config.DEFAULT_FARM_CONFIG`).

    Kept for callers that want the embedded farm without a pools file; start-up uses
    :func:`farm.db.pools.sync_pools` with the configured file.
    """
    sync_pools(session, DEFAULT_FARM_CONFIG)


def list_pools(session: Session) -> list[m.Pool]:
    return list(session.scalars(select(m.Pool).order_by(m.Pool.name)))


# ----------------------------------------------------------------------------- shows and shots
def create_show(session: Session, studio_id: int, spec: schemas.ShowCreate) -> m.Show:
    exists = session.scalar(
        select(m.Show).where(m.Show.studio_id == studio_id, m.Show.name == spec.name)
    )
    if exists is not None:
        raise Conflict(f"show {spec.name!r} already exists in your studio")
    show = m.Show(studio_id=studio_id, name=spec.name, title=spec.title)
    session.add(show)
    session.flush()
    return show


def list_shows(session: Session, studio_id: int, page: PageRequest) -> Rows[m.Show]:
    """A page of the studio's shows, oldest first (by id)."""
    return keyset_page(
        session, select(m.Show).where(m.Show.studio_id == studio_id), m.Show.id, page
    )


def get_show(session: Session, studio_id: int, show_id: int) -> m.Show:
    """A show the studio may read: its own, or one another studio shared with it whole
    (:mod:`farm.db.sharing`). To write into a show (shots, jobs, versions) use
    :func:`get_own_show`.

    Raises:
        NotFound: no such show, or one the studio may not read (the same answer).
    """
    show = readable_show(session, studio_id, show_id)
    if show is None:
        raise NotFound(f"show {show_id} not found")
    return show


def get_own_show(session: Session, studio_id: int, show_id: int) -> m.Show:
    """One of the studio's own shows, to add shots, jobs or asset versions to.

    Raises:
        NotFound: no such show, another studio's, or one only shared with the studio: one
            message for all three, so it tells no more than :func:`get_show` does.
    """
    show = get_show_or_none(session, studio_id, show_id)
    if show is None:
        raise NotFound(
            f"show {show_id} not found among your studio's shows (shows and assets another "
            "studio shares with yours are read-only)"
        )
    return show


def create_shot(session: Session, studio_id: int, show_id: int, spec: schemas.ShotCreate) -> m.Shot:
    show = get_own_show(session, studio_id, show_id)
    sequence = session.scalar(
        select(m.Sequence).where(m.Sequence.show_id == show.id, m.Sequence.name == spec.sequence)
    )
    if sequence is None:
        sequence = m.Sequence(show_id=show.id, name=spec.sequence)
        session.add(sequence)
        session.flush()
    if session.scalar(select(m.Shot).where(m.Shot.show_id == show.id, m.Shot.name == spec.name)):
        raise Conflict(f"shot {spec.name!r} already exists in show {show.name!r}")
    shot = m.Shot(show_id=show.id, sequence_id=sequence.id, name=spec.name)
    session.add(shot)
    session.flush()
    session.refresh(shot)
    return shot


def list_shots(session: Session, studio_id: int, show_id: int, page: PageRequest) -> Rows[m.Shot]:
    """A page of a show's shots, oldest first (by id), of a show the studio owns or was shared;
    another studio's show is a 404."""
    get_show(session, studio_id, show_id)
    query = (
        select(m.Shot).where(m.Shot.show_id == show_id).options(selectinload(m.Shot.sequence_row))
    )
    return keyset_page(session, query, m.Shot.id, page)


def get_shot(session: Session, studio_id: int, shot_id: int, *, field: str = "shot_id") -> m.Shot:
    shot = session.get(m.Shot, shot_id)
    if shot is None or get_show_or_none(session, studio_id, shot.show_id) is None:
        raise NotFound(f"shot {shot_id} not found", field=field)
    return shot


def get_show_or_none(session: Session, studio_id: int, show_id: int) -> m.Show | None:
    """One of the studio's own shows, else None: a show only shared with the studio is None
    too, since the callers write into it (a job into its shot)."""
    show = session.get(m.Show, show_id)
    return show if show is not None and show.studio_id == studio_id else None


# ----------------------------------------------------------------------------- blobs and assets
def record_blob(
    session: Session, studio_id: int, *, content_hash: str, size_bytes: int, storage_key: str
) -> bool:
    """Note that the store holds a blob and that ``studio_id`` may use it (it sent the bytes).

    Returns True when this studio had not sent these bytes before. Whether *another* studio
    had is never revealed.
    """
    if session.get(m.Blob, content_hash) is None:
        session.add(
            m.Blob(content_hash=content_hash, size_bytes=size_bytes, storage_key=storage_key)
        )
        session.flush()
    if session.get(m.BlobGrant, (studio_id, content_hash)) is None:
        session.add(m.BlobGrant(studio_id=studio_id, content_hash=content_hash))
        session.flush()
        return True
    return False


def studio_has_blob(session: Session, studio_id: int, content_hash: str) -> bool:
    return session.get(m.BlobGrant, (studio_id, content_hash)) is not None


def missing_blobs(session: Session, studio_id: int, hashes: list[str]) -> list[str]:
    """The hashes this studio must still upload (blobs of other studios count as missing)."""
    have = set(
        session.scalars(
            select(m.BlobGrant.content_hash).where(
                m.BlobGrant.studio_id == studio_id, m.BlobGrant.content_hash.in_(hashes)
            )
        )
    )
    return [h for h in dict.fromkeys(hashes) if h not in have]


def storage_used_bytes(session: Session, studio_id: int) -> int:
    """Bytes of the blobs the studio holds, each counted once (whoever else holds it too)."""
    used = session.scalar(
        select(func.coalesce(func.sum(m.Blob.size_bytes), 0))
        .join(m.BlobGrant, m.BlobGrant.content_hash == m.Blob.content_hash)
        .where(m.BlobGrant.studio_id == studio_id)
    )
    return int(used or 0)


def _bytes(count: int) -> str:
    return f"{count:,} bytes ({count / (1 << 30):.2f} GiB)"


def check_storage_quota(
    session: Session, studio_id: int, blobs: dict[str, int], *, limits: Limits
) -> None:
    """Refuse blobs (hash -> size in bytes) that would take the studio past its
    ``limits.max_storage_gb``.

    Bytes the studio already holds cost nothing again. Two uploads racing may both pass and
    together overshoot by at most their own sizes: the quota bounds storage, it is not a lock.

    Raises:
        Conflict: no room left; the message names what is used and the quota.
    """
    studio = session.get_one(m.Studio, studio_id).name
    quota = limits.of(studio).max_storage_bytes
    if quota is None:
        return
    new = set(missing_blobs(session, studio_id, list(blobs)))
    adding = sum(size for content_hash, size in blobs.items() if content_hash in new)
    if not adding:
        return
    used = storage_used_bytes(session, studio_id)
    if used + adding > quota:
        raise Conflict(
            f"studio {studio} uses {_bytes(used)} of its {_bytes(quota)} storage quota "
            f"(limits.max_storage_gb) and this upload needs {adding:,} bytes more: nothing "
            "was stored; ask the farm's operator for a bigger quota"
        )


MANIFEST_CHECK_BATCH = 5000
"""Hashes per query when checking a manifest's files (below every database's parameter cap)."""


def describe_manifest(
    session: Session, store: BlobStore, studio_id: int, content_hash: str
) -> dict[str, Any] | None:
    """What a directory version holds when the blob is a manifest; None for any other blob.

    A manifest is recognised by its first bytes (its canonical JSON begins with
    :data:`farm.schemas.MANIFEST_MAGIC`), and only a blob of at most
    :data:`farm.schemas.MAX_MANIFEST_BYTES` is looked at, so publishing a big file reads
    nothing. Every file a manifest lists must be bytes the studio holds, of the size it says:
    a version never points at something half uploaded.

    Returns:
        ``{"manifest": True, "files": N, "bytes": B}``, the version's ``meta``.

    Raises:
        InvalidSpec: a bad manifest (a path escaping the root, a file not uploaded, ...),
            named in the message; nothing is registered.
    """
    blob = session.get(m.Blob, content_hash)
    if blob is None or not len(schemas.MANIFEST_MAGIC) <= blob.size_bytes <= (
        schemas.MAX_MANIFEST_BYTES
    ):
        return None
    with store.open(content_hash) as handle:
        if handle.read(len(schemas.MANIFEST_MAGIC)) != schemas.MANIFEST_MAGIC:
            return None
        handle.seek(0)
        manifest = schemas.Manifest.from_bytes(handle.read())
    entries = list(manifest.files.items())
    for start in range(0, len(entries), MANIFEST_CHECK_BATCH):
        batch = entries[start : start + MANIFEST_CHECK_BATCH]
        rows = session.execute(
            select(m.Blob.content_hash, m.Blob.size_bytes)
            .join(m.BlobGrant, m.BlobGrant.content_hash == m.Blob.content_hash)
            .where(
                m.BlobGrant.studio_id == studio_id,
                m.Blob.content_hash.in_({entry.hash for _, entry in batch}),
            )
        )
        held = {content_hash: size for content_hash, size in rows}
        for path, entry in batch:
            if entry.hash not in held:
                raise InvalidSpec(
                    f"manifest: {path!r} has bytes {entry.hash} that your studio has not "
                    "uploaded: upload the tree's files before its manifest",
                    field="content_hash",
                )
            if held[entry.hash] != entry.size:
                raise InvalidSpec(
                    f"manifest: {path!r} says {entry.size:,} bytes but its blob holds "
                    f"{held[entry.hash]:,}",
                    field="content_hash",
                )
    return manifest.meta


def register_asset_version(
    session: Session,
    user: m.User,
    show_id: int,
    spec: schemas.AssetVersionCreate,
    *,
    meta: dict[str, Any] | None = None,
) -> m.AssetVersion:
    """Publish an uploaded blob as the next version of an asset of one of the studio's own
    shows (an asset shared with it is read-only), and append its ``asset_published`` event
    in the same transaction, so a reader that sees the event finds the version
    (:func:`farm.db.sharing.latest_published`).

    Raises:
        NotFound: the show is not the studio's own.
        InvalidSpec: the studio has not uploaded the blob.
    """
    show = get_own_show(session, user.studio_id, show_id)
    if not studio_has_blob(session, user.studio_id, spec.content_hash):
        raise InvalidSpec(
            f"blob {spec.content_hash} has not been uploaded by your studio: "
            "PUT /blobs/<hash> first",
            field="content_hash",
        )
    blob = session.get(m.Blob, spec.content_hash)
    assert blob is not None
    asset = session.scalar(
        select(m.Asset).where(m.Asset.show_id == show.id, m.Asset.name == spec.asset)
    )
    if asset is None:
        asset = m.Asset(studio_id=user.studio_id, show_id=show.id, name=spec.asset, kind=spec.kind)
        session.add(asset)
        session.flush()
    last = session.scalar(
        select(func.max(m.AssetVersion.version)).where(m.AssetVersion.asset_id == asset.id)
    )
    version = m.AssetVersion(
        asset_id=asset.id,
        version=(last or 0) + 1,
        content_hash=blob.content_hash,
        size_bytes=blob.size_bytes,
        storage_key=blob.storage_key,
        created_by=user.id,
        meta=meta,
    )
    session.add(version)
    session.flush()
    session.add(
        m.Event(
            studio_id=asset.studio_id,
            kind="asset_published",
            payload={
                "asset_id": asset.id,
                "asset": asset.name,
                "version": version.version,
                "version_id": version.id,
                "show_id": show.id,
            },
        )
    )
    session.flush()
    session.refresh(version)
    return version


def get_asset_version(
    session: Session, studio_id: int, version_id: int, *, field: str = "asset_version"
) -> m.AssetVersion:
    """An asset version the studio may use as an input: its own, or shared with it.

    Raises:
        InvalidSpec: naming ``field``; one message whether the version is missing or another
            studio's, so it reveals nothing.
    """
    version = readable_version(session, studio_id, version_id)
    if version is None:
        raise InvalidSpec(
            f"{field}: asset version {version_id} does not exist in your studio nor in any "
            "show or asset shared with it; register it first, or ask its owner to share it",
            field=field,
        )
    return version


# ----------------------------------------------------------------------------- jobs
def submit_job(
    session: Session,
    user: m.User,
    spec: schemas.JobSpec,
    *,
    limits: Limits | None = None,
    store: BlobStore | None = None,
) -> m.Job:
    """Check a job against the farm and store it with its layers and first frames; the
    dispatcher writes the other frames as it reaches them and plans tiles.

    The one place a spec is checked against the farm, after the schema checked its structure
    (:class:`farm.schemas.JobSpec`): the shot is the studio's, the studio's limits hold, every
    layer fits a pool and its licences exist, every input asset version is the studio's (or
    shared with it) and holds the frames the job reads
    (:func:`farm.inputs.validate_job_inputs`; caches were checked when published). All before
    the first row is written, so a bad spec leaves nothing behind.

    Args:
        limits: the pools file's limits on the job's size and the studio's unfinished tiles.
        store: where to read a cache published before its check was recorded (once, then
            recorded); None skips such caches' frame check (internal callers only).
    """
    from farm.inputs import validate_job_inputs

    shot = get_shot(session, user.studio_id, spec.shot_id)
    _check_limits(session, user, spec, limits or Limits())
    shapes = pool_shapes(session)
    licences = set(session.scalars(select(m.Licence.name)))
    for i, layer in enumerate(spec.layers):
        _check_fit(i, layer, shapes, licences)
    validate_job_inputs(session, store, user.studio_id, spec)
    _check_waits(session, user.studio_id, spec)
    job = m.Job(
        studio_id=user.studio_id,
        show_id=shot.show_id,
        shot_id=shot.id,
        name=spec.name,
        spec=spec.model_dump(mode="json"),
        state=TileState.WAITING.value,
        submitted_by=user.name,
        priority=spec.priority,
        tile_estimate=spec.tile_estimate,
    )
    session.add(job)
    session.flush()
    for position, layer_spec in enumerate(spec.layers):
        row = m.Layer(
            job_id=job.id,
            position=position,
            name=layer_spec.name,
            kind=layer_spec.kind.value,
            pool=layer_spec.pool,
            requirements=layer_spec.requirements.model_dump(mode="json"),
            depends_on=list(layer_spec.depends_on),
            spec=layer_spec.model_dump(mode="json"),
            tile_times=[],
        )
        frames = spec.layer_frames(layer_spec)
        total = len(frames)
        now = min(total, FRAMES_AT_SUBMIT)  # the rest: written as the dispatcher reaches them
        row.frames_created = None if now == total else now
        session.add(row)
        session.flush()
        insert_frames(
            session.connection(),
            job_id=job.id,
            layer_id=row.id,
            numbers=range(frames.first, frames.first + now),
        )
    session.add(m.Event(studio_id=user.studio_id, job_id=job.id, kind="job_submitted", payload={}))
    session.flush()
    return job


def _check_waits(session: Session, studio_id: int, spec: schemas.JobSpec) -> None:
    """The jobs and assets a job waits for exist and are the studio's to read (404 alike)."""
    from farm.db.sharing import readable_asset

    for i, job_id in enumerate(spec.after_jobs):
        row = session.get(m.Job, job_id)
        if row is None or row.studio_id != studio_id:
            raise NotFound(f"after_jobs[{i}]: job {job_id} not found", field="after_jobs")
    for i, wait in enumerate(spec.after_assets):
        if readable_asset(session, studio_id, wait.asset_id) is None:
            raise NotFound(
                f"after_assets[{i}]: asset {wait.asset_id} not found", field="after_assets"
            )


def _check_limits(session: Session, user: m.User, spec: schemas.JobSpec, limits: Limits) -> None:
    studio = session.get_one(m.Studio, user.studio_id).name
    mine = limits.of(studio)
    if spec.frame_count > mine.max_job_frames:
        raise InvalidSpec(
            f"frames: {spec.frame_count:,} frames in one job; studio {studio} may submit at "
            f"most {mine.max_job_frames:,} (limits.max_job_frames): split the shot into jobs",
            field="frames",
        )
    unfinished = session.scalar(
        select(func.coalesce(func.sum(m.Job.tile_estimate), 0)).where(
            m.Job.studio_id == user.studio_id, m.Job.state.not_in([s.value for s in TERMINAL])
        )
    )
    if int(unfinished or 0) + spec.tile_estimate > mine.max_pending_tiles:
        raise Conflict(
            f"studio {studio} has {int(unfinished or 0):,} tiles in unfinished jobs and this job "
            f"adds {spec.tile_estimate:,}; the limit is {mine.max_pending_tiles:,} "
            "(limits.max_pending_tiles): wait for jobs to finish or cancel some"
        )


def _check_fit(
    i: int, layer: schemas.LayerSpec, shapes: tuple[PoolShape, ...], licences: set[str]
) -> None:
    """Refuse a layer no declared pool can ever run: Ray would keep its tiles pending forever."""
    names = ", ".join(p.name for p in shapes)
    if layer.pool is not None and layer.pool not in {p.name for p in shapes}:
        raise InvalidSpec(
            f"layers[{i}].pool: unknown pool {layer.pool!r}; pools are {names}",
            field=f"layers[{i}].pool",
        )
    if not fitting_pools(layer.requirements, shapes, pool=layer.pool):
        field = f"layers[{i}].{'pool' if layer.pool is not None else 'requirements'}"
        reason = unfit_reason(layer.requirements, shapes, pool=layer.pool)
        raise InvalidSpec(f"{field}: no pool can run this layer: {reason}", field=field)
    for licence in layer.requirements.licences:
        if licence not in licences:
            field = f"layers[{i}].requirements.licences"
            known = ", ".join(sorted(licences)) or "none declared"
            raise InvalidSpec(
                f"{field}: unknown licence {licence!r}; licences are {known}", field=field
            )


def _tile_out(tile: m.Tile, waiting: str) -> schemas.TileOut:
    """A tile as the API shows it: a pending tile carries its layer's why-pending reason."""
    out = schemas.TileOut.model_validate(tile)
    if out.state == TileState.PENDING and waiting:
        return out.model_copy(update={"reason": waiting})
    return out


def frame_file_name(
    layer: str, number: int, output_path: str | None, output: Literal["exr", "preview"]
) -> str:
    """The name a frame's file is downloaded under (the farm's own name, never its folder)."""
    name = PurePath(output_path).name if output_path else f"{layer}.{number:04d}.exr"
    return name if output == "exr" else str(PurePath(name).with_suffix(".png"))


def get_job_row(session: Session, studio_id: int, job_id: int) -> m.Job:
    job = session.get(m.Job, job_id)
    if job is None or job.studio_id != studio_id:
        raise NotFound(f"job {job_id} not found")
    return job


def list_jobs(
    session: Session, studio_id: int, page: PageRequest, *, show_id: int | None = None
) -> Rows[m.Job]:
    """A page of the studio's jobs, newest first (by id), of one show or all."""
    query = select(m.Job).where(m.Job.studio_id == studio_id)
    if show_id is not None:
        query = query.where(m.Job.show_id == show_id)
    return keyset_page(session, query, m.Job.id, page, descending=True)


def job_detail(
    session: Session, studio_id: int, job_id: int, *, tiles: bool = True
) -> schemas.JobOut:
    """The job with every layer and frame, as one schema (the live tile grid's source).

    With ``tiles`` (the default) each frame lists its tiles; without, each frame only counts
    them by state, so a job of millions of tiles still reads in one small answer (its tiles
    are paged by :func:`list_tiles`).
    """
    job = get_job_row(session, studio_id, job_id)
    load_frames = selectinload(m.Layer.frames)
    layers = list(
        session.scalars(
            select(m.Layer)
            .where(m.Layer.job_id == job.id)
            .order_by(m.Layer.position)
            .options(load_frames.selectinload(m.Frame.tiles) if tiles else load_frames)
        )
    )
    counted = {} if tiles else _tile_counts_by_frame(session, job.id)
    layer_outs = []
    for layer in layers:
        frame_outs = []
        tile_counts: Counter[TileState] = Counter()
        for frame in layer.frames:
            if tiles:
                frame_counts = Counter(TileState(t.state) for t in frame.tiles)
            else:
                frame_counts = counted.get(frame.id, Counter())
            tile_counts.update(frame_counts)
            plan = frame.tile_plan or {}
            frame_outs.append(
                schemas.FrameOut(
                    number=frame.number,
                    state=TileState(frame.state),
                    tile_plan=plan.get("describe"),
                    output_hash=frame.output_hash if frame.output_path else None,
                    preview_hash=frame.preview_hash,
                    file_name=frame_file_name(layer.name, frame.number, frame.output_path, "exr")
                    if frame.output_path
                    else None,
                    tile_counts=dict(frame_counts),
                    tiles=[_tile_out(t, layer.reason) for t in frame.tiles] if tiles else [],
                )
            )
        frame_states = Counter(f.state for f in frame_outs)
        missing = 0
        if layer.frames_created is not None:
            count = (layer.spec or {}).get("task_count")  # a command layer: its tasks
            span = job.spec["frames"]
            first, last = (1, count) if count else (span["first"], span["last"])
            missing = uncreated(layer.frames_created, first, last)
        if missing:  # frames the dispatcher has not written yet wait (or were cancelled)
            ended = TileState(job.state) == TileState.CANCELLED
            frame_states[TileState.CANCELLED if ended else TileState.WAITING] += missing
        layer_state = rollup(frame_states)
        layer_outs.append(
            schemas.LayerOut(
                id=layer.id,
                name=layer.name,
                kind=LayerKind(layer.kind),
                pool=layer.pool,
                requirements=Requirements.model_validate(layer.requirements or {}),
                depends_on=list(layer.depends_on),
                wait_for=(layer.spec or {}).get("wait_for", "frame"),
                step=(layer.spec or {}).get("openjd_step"),
                frame_counts=dict(frame_states),
                state=layer_state,
                frames_total=len(frame_outs) + missing,
                contact_sheet_hash=layer.contact_sheet_hash,
                waiting=layer.reason if tile_counts.get(TileState.PENDING) else "",
                tile_counts=dict(tile_counts),
                frames=frame_outs,
            )
        )
    return schemas.JobOut(
        id=job.id,
        name=job.name,
        shot_id=job.shot_id,
        state=TileState(job.state),
        submitted_by=job.submitted_by,
        created_at=job.created_at,
        finished_at=job.finished_at,
        message=job.message,
        priority=job.priority,
        rush=job.rush,
        paused=job.paused,
        dependencies_met=job.dependencies_met,
        layers=layer_outs,
    )


def _tile_counts_by_frame(session: Session, job_id: int) -> dict[int, Counter[TileState]]:
    """Frame id -> its tiles by state, counted by the database."""
    counts: dict[int, Counter[TileState]] = {}
    rows = session.execute(
        select(m.Tile.frame_id, m.Tile.state, func.count())
        .where(m.Tile.job_id == job_id)
        .group_by(m.Tile.frame_id, m.Tile.state)
    )
    for frame_id, state, count in rows:
        counts.setdefault(frame_id, Counter())[TileState(state)] = count
    return counts


def list_tiles(
    session: Session,
    studio_id: int,
    job_id: int,
    page: PageRequest,
    *,
    state: TileState | None = None,
    layer: str | None = None,
    frame: int | None = None,
) -> Rows[schemas.JobTileOut]:
    """A page of a job's tiles in the order they were planned (by id), of one state, layer or
    frame if asked; another studio's job is a 404.

    Raises:
        NotFound: no such job in the studio.
        InvalidSpec: ``layer`` is not a layer of the job (the message lists them), or a bad
            cursor.
    """
    job = get_job_row(session, studio_id, job_id)
    layers = {
        row.id: row for row in session.scalars(select(m.Layer).where(m.Layer.job_id == job.id))
    }
    query = select(m.Tile).where(m.Tile.job_id == job.id)
    if state is not None:
        query = query.where(m.Tile.state == state.value)
    if layer is not None:
        named = [row.id for row in layers.values() if row.name == layer]
        if not named:
            names = ", ".join(row.name for row in sorted(layers.values(), key=lambda r: r.position))
            raise InvalidSpec(
                f"layer: job {job_id} has no layer {layer!r}; its layers are {names}", field="layer"
            )
        query = query.where(m.Tile.layer_id == named[0])
    if frame is not None:
        frame_ids = select(m.Frame.id).where(m.Frame.job_id == job.id, m.Frame.number == frame)
        query = query.where(m.Tile.frame_id.in_(frame_ids))
    rows = keyset_page(session, query, m.Tile.id, page)
    frames = select(m.Frame.id, m.Frame.number).where(
        m.Frame.id.in_({tile.frame_id for tile in rows.items})
    )
    numbers = {frame_id: number for frame_id, number in session.execute(frames)}
    items = [
        schemas.JobTileOut(
            **_tile_out(tile, layers[tile.layer_id].reason).model_dump(),
            id=tile.id,
            layer=layers[tile.layer_id].name,
            frame=numbers[tile.frame_id],
        )
        for tile in rows.items
    ]
    return Rows(items, rows.next_cursor)


def job_summary_rows(jobs: list[m.Job]) -> list[dict[str, Any]]:
    return [schemas.JobSummary.model_validate(j).model_dump() for j in jobs]

"""Checks of particle assets: once, when a version is published, never inside a job submit.

A particle cache with NaN positions or negative radii must be a clear 422 naming the field and
the first bad index, not a crash in a Ray worker or a silently black frame. Reading a cache of
millions of particles takes seconds, so it happens once per version: publishing a
``particle_cache`` or ``particle_seed`` version reads and validates every frame and records
what it found (``asset_versions.meta``: its frames, its largest particle count). A job submit
then only compares its frame range with that record. (A version published before this check
existed is read once, at its first use, and its record kept.) Sim outputs are validated by the
sim executor before they are stored.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from farm import schemas
from farm.db import models as m
from farm.db.queries import get_asset_version
from farm.errors import InvalidSpec
from farm.particles.cache import read_cache, validate_frame
from farm.storage import BlobStore
from farm.vocab import LayerKind

PARTICLE_KINDS = frozenset({"particle_cache", "particle_seed"})
"""Asset kinds checked at publish: a particle cache file the farm's layers read."""


def describe_particles(store: BlobStore, content_hash: str, *, name: str) -> dict[str, Any]:
    """Read and validate every frame of a particle cache; what publishing records of it.

    Raises:
        InvalidSpec: naming the asset, the cache field and the first bad particle index
            (never the server's file path).
    """
    with store.local_path(content_hash) as path:
        try:
            cache = read_cache(path)
            if not cache.frames:
                raise InvalidSpec("the particle cache holds no frames", field="frames")
            particles = 0
            for number in cache.frames:
                frame = cache.frame(number)
                validate_frame(frame)
                particles = max(particles, frame.count)
        except InvalidSpec as exc:
            why = exc.message.replace(str(path), "the file")
            raise InvalidSpec(f"asset {name!r}: {why}", field="content_hash") from exc
    return {"frames": [int(n) for n in cache.frames], "particles": particles}


def validate_job_inputs(
    session: Session, store: BlobStore | None, studio_id: int, spec: schemas.JobSpec
) -> None:
    """Check that every input asset version is the studio's (or shared with it:
    :func:`farm.db.sharing.readable_by`) and that every particle asset the job reads holds the
    frames it will use (a version never described is read from ``store`` once; without a
    store its frames are not checked).

    Raises:
        InvalidSpec: naming ``layers[i].input_asset_version`` and what is wrong.
    """
    for i, layer in enumerate(spec.layers):
        if layer.input_asset_version is None:
            continue
        field = f"layers[{i}].input_asset_version"
        version = get_asset_version(session, studio_id, layer.input_asset_version, field=field)
        if layer.kind not in (LayerKind.PARTICLE_SIM, LayerKind.PARTICLE_RENDER):
            continue
        label = f"{field} (asset {version.asset!r} v{version.version})"
        if version.asset_row.kind not in PARTICLE_KINDS | {"other"}:
            raise InvalidSpec(
                f"{label}: a {version.asset_row.kind} asset is not a particle cache", field=field
            )
        if store is None and (version.meta is None or "frames" not in version.meta):
            continue
        meta = _particle_meta(session, store, version, label, field)
        frames = set(meta["frames"])
        if layer.kind is LayerKind.PARTICLE_RENDER:
            wanted = range(spec.frames.first, spec.frames.last + 1)
            missing = [n for n in wanted if n not in frames]
            if missing:
                raise InvalidSpec(
                    f"{label}: the particle cache has no frame {missing[0]} "
                    f"({len(missing)} of the job's frames are missing)",
                    field=field,
                )


def _particle_meta(
    session: Session, store: BlobStore | None, version: m.AssetVersion, label: str, field: str
) -> dict[str, Any]:
    if version.meta is not None and "frames" in version.meta:
        return version.meta
    if version.asset_row.kind not in PARTICLE_KINDS | {"other"}:
        raise InvalidSpec(
            f"{label}: a {version.asset_row.kind} asset is not a particle cache", field=field
        )
    assert store is not None
    try:
        meta = describe_particles(store, version.content_hash, name=version.asset)
    except InvalidSpec as exc:
        raise InvalidSpec(f"{label}: {exc.message}", field=field) from exc
    version.meta = meta  # checked once: the next job using it reads this record
    return meta

"""Checks of a job's input assets, run at submission, before any tile is sent to the farm.

A particle cache with NaN positions or negative radii must be a clear 422 naming the field and
the first bad index, not a crash in a Ray worker or a silently black frame.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from farm import schemas
from farm.db.queries import get_asset_version
from farm.errors import InvalidSpec
from farm.particles.cache import read_cache, validate_cache, validate_frame
from farm.storage import BlobStore
from farm.vocab import LayerKind


def validate_job_inputs(
    session: Session, store: BlobStore, studio_id: int, spec: schemas.JobSpec
) -> None:
    """Open every particle asset the job reads and validate the frames it will use.

    Raises:
        InvalidSpec: naming ``layers[i].input_asset_version`` and, inside the message, the
            cache field and first bad particle index.
    """
    for i, layer in enumerate(spec.layers):
        if layer.input_asset_version is None:
            continue
        field = f"layers[{i}].input_asset_version"
        version = get_asset_version(session, studio_id, layer.input_asset_version, field=field)
        if layer.kind not in (LayerKind.PARTICLE_SIM, LayerKind.PARTICLE_RENDER):
            continue
        with store.local_path(version.content_hash) as path:
            try:
                cache = read_cache(path)
                if not cache.frames:
                    raise InvalidSpec("the particle cache holds no frames", field="frames")
                if layer.kind is LayerKind.PARTICLE_SIM:
                    validate_frame(cache.frame(cache.frames[0]))
                else:
                    validate_cache(cache, range(spec.frames.first, spec.frames.last + 1))
            except InvalidSpec as exc:
                # Name the asset, never the server's file path.
                why = exc.message.replace(str(path), "the file")
                raise InvalidSpec(
                    f"{field} (asset {version.asset!r} v{version.version}): {why}", field=field
                ) from exc

"""A job through the real dispatcher on local Ray with its blobs in S3 (moto's server on loopback).

Ray tasks receive the pickled S3 store, read the seed and the sim caches through their node's
cache and write tile and frame blobs to the bucket; nothing goes through a shared folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from farm import schemas
from farm.db import models as m
from farm.db import queries
from farm.db.session import Database
from farm.storage import S3Store
from scheduler.dispatch.dispatcher import Dispatcher
from tests.factories import job_spec, make_shot, make_studio, write_seed
from tests.s3_server import S3Endpoint

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]


def submit_with_seed(db: Database, store: S3Store, tmp_path: Path) -> int:
    who = make_studio(db, "alpha")
    shot_id = make_shot(db, who)
    put = store.put_file(write_seed(tmp_path / "seed.dpc"))
    with db.session() as session:
        user = session.get_one(m.User, who.user_id)
        queries.record_blob(
            session,
            who.studio_id,
            content_hash=put.content_hash,
            size_bytes=put.size_bytes,
            storage_key=put.storage_key,
        )
        version = queries.register_asset_version(
            session,
            user,
            session.get_one(m.Shot, shot_id).show_id,
            schemas.AssetVersionCreate(
                asset="seed", kind="particle_seed", content_hash=put.content_hash
            ),
        )
        spec = job_spec(shot_id, version.id, frames=(1, 2), size=(40, 30), grid=(2, 2))
        return queries.submit_job(session, user, spec).id


def test_a_job_runs_with_its_blobs_in_s3(s3_endpoint: S3Endpoint, tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'farm.db'}")
    db.migrate()
    with db.session() as session:
        queries.ensure_default_pools(session)
    # Explicit credentials: the Ray workers started before this test and share no environment.
    store = s3_endpoint.store(tmp_path / "node-cache", prefix="job", explicit_credentials=True)
    job_id = submit_with_seed(db, store, tmp_path)
    Dispatcher(db, store, tmp_path / "outputs").run_until_done([job_id], timeout_s=300)
    with db.session() as session:
        detail = queries.job_detail(session, 1, job_id)
        assert detail.state == "done", detail.model_dump_json(indent=1)[:2000]
        tiles = session.scalars(select(m.Tile).where(m.Tile.job_id == job_id)).all()
    assert len(tiles) == 2 + 2 * 4 + 2  # sims, render tiles, assembled frames
    outputs = {t.output_hash for t in tiles}
    assert None not in outputs
    client = s3_endpoint.client()
    listed = {
        item["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=s3_endpoint.bucket, Prefix="job/"
        )
        for item in page.get("Contents", [])
    }
    assert {store.key(h) for h in outputs if h} <= listed
    for tile in tiles:
        assert tile.output_hash is not None
        head = client.head_object(Bucket=s3_endpoint.bucket, Key=store.key(tile.output_hash))
        assert head["Metadata"] == {"sha256": tile.output_hash}  # written, verified, by the store
    # Every blob reads back verified, through a node cache that never saw the job.
    reader = s3_endpoint.store(tmp_path / "fresh-node", prefix="job", explicit_credentials=True)
    for tile in tiles:
        assert tile.output_hash is not None
        with reader.local_path(tile.output_hash) as path:
            assert path.stat().st_size == reader.size(tile.output_hash) > 0

"""The database round trip: migrations, every table, on SQLite and on PostgreSQL when set."""

from __future__ import annotations

from sqlalchemy import inspect, select

from farm import schemas
from farm.db import models as m
from farm.db import queries, tokens
from farm.db.session import Database
from tests.factories import job_spec, make_shot, make_studio


def test_migration_creates_every_table(db: Database) -> None:
    tables = set(inspect(db.engine).get_table_names())
    assert set(m.Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_migrating_twice_is_a_no_op(db: Database) -> None:
    db.migrate()
    with db.session() as session:
        assert {p.name for p in queries.list_pools(session)} == {"cpu", "h100", "ascend"}


def test_round_trip_from_studio_to_tiles(db: Database) -> None:
    who = make_studio(db, "nimble")
    shot_id = make_shot(db, who)
    with db.session() as session:
        user = session.get_one(m.User, who.user_id)
        queries.record_blob(
            session,
            who.studio_id,
            content_hash="a" * 64,
            size_bytes=10,
            storage_key="aa/aa/" + "a" * 64,
        )
        version = queries.register_asset_version(
            session,
            user,
            session.get_one(m.Shot, shot_id).show_id,
            schemas.AssetVersionCreate(asset="seed", kind="particle_seed", content_hash="a" * 64),
        )
        job = queries.submit_job(session, user, job_spec(shot_id, version.id, frames=(1001, 1003)))
        job_id = job.id
    with db.session() as session:
        detail = queries.job_detail(session, who.studio_id, job_id)
        assert [layer.name for layer in detail.layers] == ["sim", "render", "comp"]
        assert [f.number for f in detail.layers[1].frames] == [1001, 1002, 1003]
        assert detail.state == "waiting"
        stored = session.get_one(m.Job, job_id)
        assert schemas.JobSpec.model_validate(stored.spec).frames.first == 1001
        token_hashes = session.scalars(select(m.User.token_hash)).all()
        assert who.token not in token_hashes  # stored hashed, never in clear
        assert tokens.hash_token(who.token) in token_hashes


def test_asset_versions_count_up_and_stay_immutable(db: Database) -> None:
    who = make_studio(db, "nimble")
    shot_id = make_shot(db, who)
    with db.session() as session:
        user = session.get_one(m.User, who.user_id)
        show_id = session.get_one(m.Shot, shot_id).show_id
        for digit in "bc":
            queries.record_blob(
                session, who.studio_id, content_hash=digit * 64, size_bytes=1, storage_key=digit
            )
        v1 = queries.register_asset_version(
            session, user, show_id, schemas.AssetVersionCreate(asset="seed", content_hash="b" * 64)
        )
        v2 = queries.register_asset_version(
            session, user, show_id, schemas.AssetVersionCreate(asset="seed", content_hash="c" * 64)
        )
        assert (v1.version, v2.version) == (1, 2)
        assert v1.asset_id == v2.asset_id
        assert v1.content_hash == "b" * 64


def test_migrations_match_the_tables_exactly(db: Database) -> None:
    """A model change without a new alembic revision fails here, not in production."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with db.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), m.Base.metadata) == []

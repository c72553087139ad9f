"""Migration 0004 and the fair-share tables: pools from the pools file, requirements at submit."""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect, select, text

from farm import schemas
from farm.db import models as m
from farm.db import queries
from farm.db.pools import pool_shapes, sync_pools
from farm.db.session import Database, alembic_config
from farm.errors import InvalidSpec
from farm.pool_config import DEFAULT_FARM_CONFIG, parse_farm_config
from tests.factories import job_spec, make_shot, make_studio

FILE = """
[[pools]]
name = "cpu"
cores_per_node = 16
memory_gb = 64
price_per_node_hour = 0.30

[[pools]]
name = "a100"
accelerator = "nvidia-a100"
cores_per_node = 16
memory_gb = 256
accelerators_per_node = 4
accelerator_memory_gb = 40
price_per_node_hour = 3.00
backfill = true

[licences]
houdini = 5
"""


def run_alembic(db: Database, action: str, revision: str) -> None:
    cfg = alembic_config(db.engine.url.render_as_string(hide_password=False))
    with db.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        getattr(command, action)(cfg, revision)


def test_0004_upgrades_rows_written_before_it(db: Database) -> None:
    """Existing pools get their kind from Ray's string; jobs, layers and tiles their defaults."""
    run_alembic(db, "downgrade", "0003")
    assert "quotas" not in inspect(db.engine).get_table_names()
    with db.engine.begin() as connection:
        connection.execute(text("DELETE FROM pools"))
        connection.execute(
            text(
                "INSERT INTO pools (name, accelerator, price_per_node_hour, cpus_per_node, "
                "currency) VALUES ('gpu', 'H100', 9.8, 8, 'USD'), ('cpu', 'none', 0.5, 32, 'USD')"
            )
        )
    run_alembic(db, "upgrade", "head")
    tables = set(inspect(db.engine).get_table_names())
    assert {"quotas", "licences", "licence_guarantees", "fair_share_usage"} <= tables
    with db.session() as session:
        kinds = {p.name: (p.accelerator_kind, p.backfill) for p in queries.list_pools(session)}
        assert kinds == {"gpu": ("nvidia-h100", False), "cpu": ("cpu", False)}
    columns = {c["name"] for c in inspect(db.engine).get_columns("tiles")}
    assert "preemptions" in columns
    layer_pool = next(c for c in inspect(db.engine).get_columns("layers") if c["name"] == "pool")
    assert layer_pool["nullable"]


def test_sync_pools_writes_the_file_and_drops_undeclared_pools(db: Database) -> None:
    config = parse_farm_config(FILE)
    who = make_studio(db, "nimble")
    with db.session() as session:
        session.add(m.Quota(studio_id=who.studio_id, pool="h100", guarantee=2))
    with db.session() as session:
        sync_pools(session, config)
    with db.session() as session:
        shapes = {s.name: s for s in pool_shapes(session)}
        assert set(shapes) == {"cpu", "a100"}
        assert shapes["a100"].accelerators_per_node == 4 and shapes["a100"].backfill
        a100 = session.get_one(m.Pool, "a100")
        assert (a100.accelerator, a100.cpus_per_node, a100.price_per_node_hour) == ("A100", 16, 3)
        assert session.get_one(m.Licence, "houdini").count == 5
        assert session.scalars(select(m.Quota)).all() == []  # went with pool h100
    with db.session() as session:
        sync_pools(session, DEFAULT_FARM_CONFIG)  # the file wins again at the next start
    with db.session() as session:
        assert [p.name for p in queries.list_pools(session)] == ["ascend", "cpu", "h100"]
        assert session.get_one(m.Licence, "houdini").count == 5  # not named: left alone


def submit(db: Database, **layer_changes: Any) -> m.Job:
    who = make_studio(db, "nimble")
    shot_id = make_shot(db, who)
    with db.session() as session:
        user = session.get_one(m.User, who.user_id)
        queries.record_blob(
            session, who.studio_id, content_hash="a" * 64, size_bytes=1, storage_key="a"
        )
        version = queries.register_asset_version(
            session,
            user,
            session.get_one(m.Shot, shot_id).show_id,
            schemas.AssetVersionCreate(asset="seed", content_hash="a" * 64),
        )
        raw = job_spec(shot_id, version.id).model_dump(mode="json")
        raw["priority"] = 80
        raw["layers"][1].update(layer_changes)
        job = queries.submit_job(session, user, schemas.JobSpec.model_validate(raw))
        session.expunge(job)
        return job


def test_submit_stores_priority_requirements_and_a_pool_left_to_the_farm(db: Database) -> None:
    job = submit(
        db,
        pool=None,
        requirements={"accelerator": "nvidia-h100", "accelerator_memory_gb": 80, "cores": 2},
    )
    with db.session() as session:
        layers = session.scalars(select(m.Layer).where(m.Layer.job_id == job.id)).all()
        assert [layer.pool for layer in layers] == [None, None, None]
        assert layers[1].requirements["accelerator"] == "nvidia-h100"
        assert layers[1].requirements["cores"] == 2
        assert session.get_one(m.Job, job.id).priority == 80
        detail = queries.job_detail(session, job.studio_id, job.id)
        assert detail.priority == 80 and not detail.rush
        assert detail.layers[1].requirements.accelerator_memory_gb == 80


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        (
            {
                "pool": None,
                "requirements": {"accelerator": "ascend-910b", "accelerator_memory_gb": 80},
            },
            "layers[1].requirements",
            "no node of any pool has 80 GB of accelerator memory on ascend-910b "
            "(largest: 64 GB in pool ascend)",
        ),
        (
            {"pool": "cpu", "requirements": {"cores": 64}},
            "layers[1].pool",
            "pool cpu has 32 cores per node; the layer needs 64",
        ),
        ({"pool": "quantum"}, "layers[1].pool", "unknown pool 'quantum'"),
        (
            {"requirements": {"licences": ["houdini"]}},
            "layers[1].requirements.licences",
            "unknown licence 'houdini'",
        ),
    ],
)
def test_a_layer_no_pool_can_ever_run_is_refused_and_nothing_stored(
    db: Database, changes: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(InvalidSpec) as info:
        submit(db, **changes)
    assert info.value.field == field
    assert words in info.value.message
    with db.session() as session:
        assert session.scalars(select(m.Job)).all() == []

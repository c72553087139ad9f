"""Shared fixtures: a clean environment, databases (SQLite, and PostgreSQL when set), local Ray.

- ``db``: a migrated, empty database per test; runs on SQLite and, when ``FARM_TEST_PG_URL`` is
  set, on PostgreSQL too (a clean schema per test).
- ``ray_local``: one local Ray for the run (restarted after a multi-node test) with the farm's
  pools declared as custom resources (``pool:cpu``, ``pool:h100`` with
  ``accelerator_type:H100``), so placement runs without GPUs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text

from farm.db.models import Base
from farm.db.session import Database

if TYPE_CHECKING:
    from farm.storage import DiskStore

PG_URL = os.environ.get("FARM_TEST_PG_URL")
DB_PARAMS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(autouse=True)
def _clean_farm_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's FARM_* settings; FARM_HOME points into the test's tmp dir."""
    for key in list(os.environ):
        if key.startswith("FARM_") and key != "FARM_TEST_PG_URL":
            monkeypatch.delenv(key)
    monkeypatch.setenv("FARM_HOME", str(tmp_path / "farm-home"))
    # Nor the developer's `farm login` credentials: the CLI reads them after FARM_TOKEN.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    from farm.settings import get_settings

    get_settings.cache_clear()


def _reset_postgres(url: str) -> None:
    database = Database(url)
    with database.engine.begin() as connection:
        Base.metadata.drop_all(connection)
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    database.dispose()


def migrated_database(kind: str, folder: Path) -> Database:
    """A migrated, empty database with the default pools: SQLite in ``folder``, or the
    PostgreSQL of FARM_TEST_PG_URL (emptied first; the test is skipped when it is not set)."""
    if kind == "postgresql":
        if not PG_URL:
            pytest.skip("FARM_TEST_PG_URL is not set: PostgreSQL tests skipped")
        _reset_postgres(PG_URL)
        url = PG_URL
    else:
        url = f"sqlite:///{folder / 'farm.db'}"
    database = Database(url)
    database.migrate()
    from farm.db.queries import ensure_default_pools

    with database.session() as session:
        ensure_default_pools(session)
    return database


@pytest.fixture(params=DB_PARAMS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database: SQLite in tmp, or PostgreSQL when FARM_TEST_PG_URL is set."""
    database = migrated_database(request.param, tmp_path)
    yield database
    database.dispose()


Farm = tuple[Database, "DiskStore", Path]
"""A fresh farm for dispatcher tests: its database, blob store and output folder."""


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[Farm]:
    """A migrated SQLite farm database with the default pools, a disk store and an output
    folder, all under the test's tmp dir (the dispatcher tests' farm)."""
    from farm.db.queries import ensure_default_pools
    from farm.storage import DiskStore

    db = Database(f"sqlite:///{tmp_path / 'farm.db'}")
    db.migrate()
    with db.session() as session:
        ensure_default_pools(session)
    yield db, DiskStore(tmp_path / "blobs"), tmp_path / "outputs"
    db.dispose()


@pytest.fixture
def ray_local() -> Iterator[None]:
    """The local Ray, with the farm's pools as custom resources: started by the first test that
    needs it and kept for the rest of the run, unless a multi-node test (``ray_cluster`` in
    ``tests/integration/test_cluster.py``) replaced it meanwhile."""
    import ray

    from farm.pool_config import DEFAULT_FARM_CONFIG
    from scheduler.runtime import start_ray

    if not ray.is_initialized():
        start_ray(
            address=None,
            pools=DEFAULT_FARM_CONFIG.shapes,
            num_cpus=2,
            object_store_memory=300 * 1024 * 1024,
        )
    yield


@pytest.fixture(scope="session", autouse=True)
def _ray_down_at_exit() -> Iterator[None]:
    yield
    import sys

    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()


# The S3 store's endpoint and store fixtures (issue 21): moto's server on loopback, see there.
from tests.s3_server import s3_endpoint, s3_store  # noqa: E402, F401

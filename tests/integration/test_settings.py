"""Configuration: embedded defaults under FARM_HOME, FARM_DATABASE_URL switches the database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from farm.api.context import FarmContext
from farm.settings import DEFAULT_FARM_HOME, Settings
from tests.conftest import PG_URL, _reset_postgres


def test_embedded_defaults_live_under_farm_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FARM_HOME")
    assert Settings().home == DEFAULT_FARM_HOME.resolve()
    monkeypatch.setenv("FARM_HOME", str(tmp_path / "studio-farm"))
    settings = Settings()
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'studio-farm' / 'farm.db'}"
    context = FarmContext.from_settings(settings)
    assert (tmp_path / "studio-farm" / "farm.db").is_file()
    assert context.output_root == tmp_path / "studio-farm" / "outputs"
    assert "pools" in inspect(context.db.engine).get_table_names()


@pytest.mark.postgres
def test_farm_database_url_switches_to_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    if not PG_URL:
        pytest.skip("FARM_TEST_PG_URL is not set: PostgreSQL tests skipped")
    _reset_postgres(PG_URL)
    monkeypatch.setenv("FARM_DATABASE_URL", PG_URL)
    context = FarmContext.from_settings(Settings())
    assert context.db.engine.dialect.name == "postgresql"
    assert "usage_records" in inspect(context.db.engine).get_table_names()
    context.db.dispose()


def test_unreachable_database_is_a_clear_unavailable_error(tmp_path: Path) -> None:
    from farm.errors import Unavailable

    settings = Settings(home=tmp_path, database_url="postgresql+psycopg://nobody@127.0.0.1:9/none")
    with pytest.raises(Unavailable, match="cannot reach the database"):
        FarmContext.from_settings(settings)

"""The farm's one configuration object, read from ``FARM_*`` environment variables.

Read once at the edge (``get_settings()``) and pass plain values down: the planner, the state
machine and the tile code never see ``Settings``, and Ray workers get values as task arguments.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_FARM_HOME = Path.home() / ".delta-farm"
"""Where the embedded farm keeps its SQLite database, asset store and outputs by default."""


class Settings(BaseSettings):
    """Delta's configuration. Every field has an embedded default so ``farm demo`` needs nothing."""

    model_config = SettingsConfigDict(env_prefix="FARM_", extra="ignore")

    home: Path = Field(
        default=DEFAULT_FARM_HOME,
        description="FARM_HOME: root folder of the embedded farm (database, blobs, outputs).",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db; "
        "default sqlite:///$FARM_HOME/farm.db.",
    )
    ray_address: str | None = Field(
        default=None,
        description="Address of an existing Ray cluster to join; default: start a local Ray.",
    )
    api_url: str = Field(
        default="http://127.0.0.1:8765", description="Where the CLI finds the farm's API."
    )
    token: str | None = Field(default=None, description="API token the CLI sends (FARM_TOKEN).")
    pools_file: Path | None = Field(
        default=None,
        description="FARM_POOLS_FILE: the pools file (TOML, docs/pools.md); default "
        "$FARM_HOME/farm.toml when it exists, else the embedded cpu/h100/ascend pools.",
    )
    tile_max_attempts: int = Field(
        default=3, ge=1, description="Attempts per tile before it fails for good."
    )

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("pools_file")
    @classmethod
    def _pools_file_exists(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = value.expanduser().resolve()
        if not value.is_file():
            raise ValueError(f"FARM_POOLS_FILE: {value} is not a file")
        return value

    @property
    def resolved_pools_file(self) -> Path | None:
        """The pools file to read: FARM_POOLS_FILE, else $FARM_HOME/farm.toml if present."""
        if self.pools_file is not None:
            return self.pools_file
        default = self.home / "farm.toml"
        return default if default.is_file() else None

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite inside FARM_HOME."""
        return self.database_url or f"sqlite:///{self.home / 'farm.db'}"

    @property
    def blob_root(self) -> Path:
        """Root of the on-disk content-addressed asset store."""
        return self.home / "blobs"

    @property
    def output_root(self) -> Path:
        """Where assembled frames, previews and contact sheets are written."""
        return self.home / "outputs"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()

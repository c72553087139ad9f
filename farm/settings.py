"""The farm's one configuration object, read from ``FARM_*`` environment variables.

Read once at the edge (``get_settings()``) and pass plain values down: the planner, the state
machine and the tile code never see ``Settings``, and Ray workers get values as task arguments.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_FARM_HOME = Path.home() / ".delta-farm"
"""Where the embedded farm keeps its SQLite database, asset store and outputs by default."""
DEFAULT_MAX_UPLOAD_BYTES = 20 << 30
"""The largest blob one ``PUT /blobs/{hash}`` may send by default: 20 GiB."""


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
    store: Literal["disk", "s3"] = Field(
        default="disk",
        description="FARM_STORE: where blobs live: disk ($FARM_HOME/blobs, shared by every node) "
        "or s3 (the FARM_S3_* bucket, read through each node's FARM_CACHE_DIR).",
    )
    s3_bucket: str | None = Field(
        default=None, description="FARM_S3_BUCKET: the bucket of the s3 store (required for it)."
    )
    s3_prefix: str = Field(
        default="", description="FARM_S3_PREFIX: prepended to every object key, e.g. delta/."
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="FARM_S3_ENDPOINT_URL: an S3-compatible endpoint (MinIO, Ceph RGW), e.g. "
        "http://minio:9000; default AWS S3. Credentials come from boto3's chain (AWS_* "
        "variables, AWS_PROFILE, the node's role).",
    )
    s3_region: str | None = Field(
        default=None, description="FARM_S3_REGION: the bucket's region; default boto3's."
    )
    max_upload_bytes: int = Field(
        default=DEFAULT_MAX_UPLOAD_BYTES,
        ge=1,
        description="FARM_MAX_UPLOAD_BYTES: the largest blob one upload may send, in bytes "
        "(default 20 GiB); a bigger one is refused with a 413 before it is stored.",
    )
    cache_dir: Path | None = Field(
        default=None,
        description="FARM_CACHE_DIR: each node's local cache of blobs read from the s3 store "
        "(a path that every node can create on local disk); default $FARM_HOME/cache.",
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

    @field_validator("cache_dir")
    @classmethod
    def _absolute_cache_dir(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().resolve()

    @field_validator("s3_endpoint_url", "s3_region", "s3_bucket")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        # A deployment template often sets these to "" for AWS: the same as leaving them out.
        if value is None:
            return None
        return value.strip() or None

    @field_validator("s3_endpoint_url")
    @classmethod
    def _endpoint_is_a_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"FARM_S3_ENDPOINT_URL: {value!r} is not an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> Settings:
        if self.store == "s3" and not self.s3_bucket:
            raise ValueError(
                "FARM_STORE=s3 needs FARM_S3_BUCKET: the bucket that holds the farm's blobs"
            )
        return self

    @property
    def resolved_cache_dir(self) -> Path:
        """This node's blob cache: FARM_CACHE_DIR, else $FARM_HOME/cache."""
        return self.cache_dir or self.home / "cache"

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

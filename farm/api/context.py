"""What the API process holds: the database, the asset store and where outputs go."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from farm.db.session import Database
from farm.pool_config import Limits
from farm.settings import DEFAULT_MAX_UPLOAD_BYTES, Settings
from farm.storage import BlobStore, DiskStore, S3Store


@dataclass
class FarmContext:
    """The farm's long-lived parts, built once at start-up and shared by API and dispatcher."""

    db: Database
    store: BlobStore
    output_root: Path
    limits: Limits = field(default_factory=Limits)
    """What each studio may submit and store (``[limits]`` of the pools file)."""
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    """The largest blob one upload may send (``FARM_MAX_UPLOAD_BYTES``)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> FarmContext:
        """Open (and migrate) the database and the blob store that ``settings`` name.

        Raises:
            Unavailable: the database or the S3 bucket cannot be reached.
        """
        settings.home.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url)
        db.migrate()
        from farm.db.pools import sync_pools
        from farm.pool_config import load_farm_config

        config = load_farm_config(settings.resolved_pools_file)
        with db.session() as session:
            sync_pools(session, config)
        return cls(
            db=db,
            store=open_store(settings),
            output_root=settings.output_root,
            limits=config.limits,
            max_upload_bytes=settings.max_upload_bytes,
        )


def open_store(settings: Settings) -> BlobStore:
    """The blob store ``FARM_STORE`` names: the disk store (default) or the S3 bucket.

    An S3 store is checked here, so a wrong bucket, endpoint or credentials stop start-up.

    Raises:
        Unavailable: the S3 bucket cannot be reached.
    """
    if settings.store == "s3":
        assert settings.s3_bucket is not None  # Settings refuses s3 without a bucket
        store = S3Store(
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            cache_dir=settings.resolved_cache_dir,
        )
        store.check()
        return store
    return DiskStore(settings.blob_root)

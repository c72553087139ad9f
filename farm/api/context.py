"""What the API process holds: the database, the asset store and where outputs go."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from farm.db.session import Database
from farm.pool_config import Limits
from farm.settings import Settings
from farm.storage import BlobStore, DiskStore


@dataclass
class FarmContext:
    """The farm's long-lived parts, built once at start-up and shared by API and dispatcher."""

    db: Database
    store: BlobStore
    output_root: Path
    limits: Limits = field(default_factory=Limits)
    """What each studio may submit (``[limits]`` of the pools file)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> FarmContext:
        """Open (and migrate) the database and the disk store that ``settings`` name."""
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
            store=DiskStore(settings.blob_root),
            output_root=settings.output_root,
            limits=config.limits,
        )

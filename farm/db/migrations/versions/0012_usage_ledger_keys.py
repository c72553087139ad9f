"""Usage records keep one foreign key, their tile's: the job, studio, show, shot and layer
beside it are copies of the tile's own chain, written from it by the dispatcher for the cost
report's grouping, and nothing deletes those rows. Each foreign key made PostgreSQL check one
more row per insert, at thousands of inserts a tick at farm scale. The plain index on
``tile_id`` goes too: the unique (tile_id, attempt) index serves every lookup by tile.

Measured on PostgreSQL, COPY of 3,800 usage rows in a transaction (the farm-scale tick's
share), median of 5: 95 ms with the six keys, 36 ms with the tile's alone.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 20:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

COPIED = {"job_id": "jobs", "studio_id": "studios", "show_id": "shows", "shot_id": "shots"}
COPIED["layer_id"] = "layers"
SQLITE_NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s"}
"""SQLite's foreign keys have no names; batch mode names them by this convention to drop them."""


def upgrade() -> None:
    op.drop_index("ix_usage_records_tile_id", table_name="usage_records")
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("usage_records", naming_convention=SQLITE_NAMES) as batch:
            for column in COPIED:
                batch.drop_constraint(f"fk_usage_records_{column}", type_="foreignkey")
        return
    for column in COPIED:
        op.drop_constraint(f"usage_records_{column}_fkey", "usage_records", type_="foreignkey")


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("usage_records") as batch:
        for column, table in COPIED.items():
            name = f"fk_usage_records_{column}" if sqlite else f"usage_records_{column}_fkey"
            batch.create_foreign_key(name, table, [column], ["id"])
    op.create_index("ix_usage_records_tile_id", "usage_records", ["tile_id"])

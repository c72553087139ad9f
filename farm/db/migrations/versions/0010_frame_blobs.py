"""Frames' previews and layers' contact sheets are blobs, downloaded through the API; asset
names may hold folders (creatures/seamonster, up to 128 characters); a tile's log is a
blob; jobs record when what they waited for was met

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 01:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("frames") as batch:
        batch.add_column(sa.Column("preview_hash", sa.String(64), nullable=True))
    with op.batch_alter_table("layers") as batch:
        batch.add_column(sa.Column("contact_sheet_hash", sa.String(64), nullable=True))
    with op.batch_alter_table("assets") as batch:
        batch.alter_column("name", type_=sa.String(128), existing_type=sa.String(64))
    with op.batch_alter_table("tiles") as batch:
        batch.add_column(sa.Column("log_hash", sa.String(64), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("dependencies_met", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("dependencies_met")
    with op.batch_alter_table("tiles") as batch:
        batch.drop_column("log_hash")
    with op.batch_alter_table("assets") as batch:
        batch.alter_column("name", type_=sa.String(64), existing_type=sa.String(128))
    with op.batch_alter_table("layers") as batch:
        batch.drop_column("contact_sheet_hash")
    with op.batch_alter_table("frames") as batch:
        batch.drop_column("preview_hash")

"""tiles: dispatch rank and estimated seconds, so a frame's slow tiles are sent first

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 02:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tiles") as batch:
        batch.add_column(sa.Column("rank", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("estimate_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tiles") as batch:
        batch.drop_column("estimate_s")
        batch.drop_column("rank")

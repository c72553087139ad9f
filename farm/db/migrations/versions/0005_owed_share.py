"""fair_share_usage: the decayed integral of each studio's share; layers: why they wait

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fair_share_usage") as batch:
        batch.add_column(sa.Column("owed_slot_s", sa.Float(), nullable=False, server_default="0"))
    with op.batch_alter_table("layers") as batch:
        batch.add_column(sa.Column("reason", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("layers") as batch:
        batch.drop_column("reason")
    with op.batch_alter_table("fair_share_usage") as batch:
        batch.drop_column("owed_slot_s")

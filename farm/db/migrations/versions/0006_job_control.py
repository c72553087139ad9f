"""Job control, faults and big jobs: paused jobs, queued job commands, uncounted attempts, Ray
node ids, frames created as the dispatcher reaches them

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("tile_estimate", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("asset_versions") as batch:
        batch.add_column(sa.Column("meta", sa.JSON(), nullable=True))
    with op.batch_alter_table("layers") as batch:
        batch.add_column(sa.Column("frames_created", sa.Integer(), nullable=True))
    with op.batch_alter_table("tiles") as batch:
        batch.add_column(sa.Column("forgiven", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("node_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("avoid_nodes", sa.JSON(), nullable=True))
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("node_id", sa.String(64), nullable=True))
        batch.create_unique_constraint("uq_usage_tile_attempt", ["tile_id", "attempt"])
    op.create_table(
        "job_commands",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("jobs.id"), nullable=False, index=True),
        sa.Column("studio_id", sa.Integer(), sa.ForeignKey("studios.id"), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True, index=True),
        sa.Column("result", sa.Text(), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_table("job_commands")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_constraint("uq_usage_tile_attempt", type_="unique")
        batch.drop_column("node_id")
    with op.batch_alter_table("tiles") as batch:
        batch.drop_column("avoid_nodes")
        batch.drop_column("node_id")
        batch.drop_column("forgiven")
    with op.batch_alter_table("layers") as batch:
        batch.drop_column("frames_created")
    with op.batch_alter_table("asset_versions") as batch:
        batch.drop_column("meta")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("tile_estimate")
        batch.drop_column("paused")

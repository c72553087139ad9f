"""fair share: pool node specs, quotas, licences, job priority and rush, layer requirements,
tile preemptions and decayed usage (issue 19)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_KIND_OF_RAY_TYPE = {"none": "cpu", "H100": "nvidia-h100", "Ascend910B": "ascend-910b"}
"""Pools stored before 0004 had only Ray's string; their kind follows from it."""


def upgrade() -> None:
    with op.batch_alter_table("pools") as batch:
        batch.add_column(
            sa.Column("accelerator_kind", sa.String(32), server_default="cpu", nullable=False)
        )
        batch.add_column(sa.Column("memory_gb", sa.Float(), server_default="0", nullable=False))
        batch.add_column(
            sa.Column("accelerators_per_node", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(
            sa.Column("accelerator_memory_gb", sa.Float(), server_default="0", nullable=False)
        )
        batch.add_column(
            sa.Column("backfill", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    pools = sa.table("pools", sa.column("accelerator", sa.String), sa.column("accelerator_kind"))
    for ray_type, kind in _KIND_OF_RAY_TYPE.items():
        op.execute(
            pools.update().where(pools.c.accelerator == ray_type).values(accelerator_kind=kind)
        )

    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), server_default="50", nullable=False))
        batch.add_column(sa.Column("rush", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("layers") as batch:
        batch.alter_column("pool", existing_type=sa.String(64), nullable=True)
        batch.add_column(
            sa.Column("requirements", sa.JSON(), server_default=sa.text("'{}'"), nullable=False)
        )
    with op.batch_alter_table("tiles") as batch:
        batch.add_column(sa.Column("preemptions", sa.Integer(), server_default="0", nullable=False))

    op.create_table(
        "quotas",
        sa.Column("studio_id", sa.Integer(), nullable=False),
        sa.Column("pool", sa.String(64), nullable=False),
        sa.Column("guarantee", sa.Integer(), server_default="0", nullable=False),
        sa.Column("weight", sa.Float(), server_default="1", nullable=False),
        sa.Column("ceiling", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["studio_id"], ["studios.id"]),
        sa.ForeignKeyConstraint(["pool"], ["pools.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("studio_id", "pool"),
    )
    op.create_table(
        "licences",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "licence_guarantees",
        sa.Column("licence", sa.String(64), nullable=False),
        sa.Column("studio_id", sa.Integer(), nullable=False),
        sa.Column("guarantee", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["licence"], ["licences.name"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["studio_id"], ["studios.id"]),
        sa.PrimaryKeyConstraint("licence", "studio_id"),
    )
    op.create_table(
        "fair_share_usage",
        sa.Column("studio_id", sa.Integer(), nullable=False),
        sa.Column("pool", sa.String(64), nullable=False),
        sa.Column("usage_slot_s", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["studio_id"], ["studios.id"]),
        sa.PrimaryKeyConstraint("studio_id", "pool"),
    )


def downgrade() -> None:
    op.drop_table("fair_share_usage")
    op.drop_table("licence_guarantees")
    op.drop_table("licences")
    op.drop_table("quotas")
    with op.batch_alter_table("tiles") as batch:
        batch.drop_column("preemptions")
    with op.batch_alter_table("layers") as batch:
        batch.drop_column("requirements")
        batch.alter_column("pool", existing_type=sa.String(64), nullable=False)
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("rush")
        batch.drop_column("priority")
    with op.batch_alter_table("pools") as batch:
        for column in (
            "backfill",
            "accelerator_memory_gb",
            "accelerators_per_node",
            "memory_gb",
            "accelerator_kind",
        ):
            batch.drop_column(column)

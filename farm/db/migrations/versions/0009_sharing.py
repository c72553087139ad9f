"""Sharing between studios: read grants on a show or an asset, and their audit log

``shares`` holds one row per grant (revoked ones stay, stamped ``revoked_at``);
``share_audit`` appends a row for every grant and revoke. Nothing existing changes: without a
share every studio still reads only its own shows and assets.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shares",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("grantor_studio_id", sa.Integer(), nullable=False),
        sa.Column("grantee_studio_id", sa.Integer(), nullable=False),
        sa.Column("show_id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["grantor_studio_id"], ["studios.id"]),
        sa.ForeignKeyConstraint(["grantee_studio_id"], ["studios.id"]),
        sa.ForeignKeyConstraint(["show_id"], ["shows.id"]),
        sa.ForeignKeyConstraint(["asset_id"], ["assets.id"]),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"]),
        sa.ForeignKeyConstraint(["revoked_by"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("grantor_studio_id", "grantee_studio_id", "show_id", "asset_id"):
        op.create_index(op.f(f"ix_shares_{column}"), "shares", [column], unique=False)
    op.create_table(
        "share_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("share_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("grantor_studio_id", sa.Integer(), nullable=False),
        sa.Column("grantee_studio_id", sa.Integer(), nullable=False),
        sa.Column("show_id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["share_id"], ["shares.id"]),
        sa.ForeignKeyConstraint(["grantor_studio_id"], ["studios.id"]),
        sa.ForeignKeyConstraint(["grantee_studio_id"], ["studios.id"]),
        sa.ForeignKeyConstraint(["show_id"], ["shows.id"]),
        sa.ForeignKeyConstraint(["asset_id"], ["assets.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("share_id", "grantor_studio_id", "grantee_studio_id"):
        op.create_index(op.f(f"ix_share_audit_{column}"), "share_audit", [column], unique=False)


def downgrade() -> None:
    # Every grant ends with the tables: other studios read nothing of yours again.
    for column in ("share_id", "grantor_studio_id", "grantee_studio_id"):
        op.drop_index(op.f(f"ix_share_audit_{column}"), table_name="share_audit")
    op.drop_table("share_audit")
    for column in ("grantor_studio_id", "grantee_studio_id", "show_id", "asset_id"):
        op.drop_index(op.f(f"ix_shares_{column}"), table_name="shares")
    op.drop_table("shares")

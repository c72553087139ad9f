"""API tokens in their own table: several per user, listed, revoked, rotated, expiring

Every user's existing token (``users.token_hash``, sha256 of the token) becomes an
``api_tokens`` row named ``legacy``, so tokens issued before this revision keep working.
``users.token_hash`` stays as the record of the token issued with the user; authentication
reads only ``api_tokens`` from here on.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("studio_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["studio_id"], ["studios.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index(op.f("ix_api_tokens_user_id"), "api_tokens", ["user_id"], unique=False)
    op.create_index(op.f("ix_api_tokens_studio_id"), "api_tokens", ["studio_id"], unique=False)
    # The secret of an old token is unknown, so it has no visible prefix (NULL).
    op.execute(
        "INSERT INTO api_tokens (user_id, studio_id, name, prefix, token_hash, created_at) "
        "SELECT id, studio_id, 'legacy', NULL, token_hash, created_at FROM users"
    )


def downgrade() -> None:
    # users.token_hash still holds each user's first token, which 0007 authenticates again
    # (even if it was revoked since); tokens created or rotated since are lost with the table.
    op.drop_index(op.f("ix_api_tokens_studio_id"), table_name="api_tokens")
    op.drop_index(op.f("ix_api_tokens_user_id"), table_name="api_tokens")
    op.drop_table("api_tokens")

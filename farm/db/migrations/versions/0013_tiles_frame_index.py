"""The plain index on a tile's frame goes: the unique (frame, index) key starts with the frame
and serves every lookup by frame, so the second index only cost a write per tile inserted
(the dispatcher inserts a frame's tiles as it reaches the frame) and per tile update that
PostgreSQL cannot do in place.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 23:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_tiles_frame_id", table_name="tiles")


def downgrade() -> None:
    op.create_index("ix_tiles_frame_id", "tiles", ["frame_id"])

"""A tile's state is no longer indexed, so the dispatcher's thousands of state changes a tick
rewrite no index: PostgreSQL updates them in place (HOT, with room left on each page by a
fillfactor of 80), SQLite maintains one index fewer. A job's tiles are still found by job id.

Measured at farm scale on PostgreSQL (``bench/db_tick.py``, one A/B run each): 820 ms a tick
with the index, 562 ms without.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 05:45:00
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_tiles_job_state", table_name="tiles")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE tiles SET (fillfactor = 80)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE tiles RESET (fillfactor)")
    op.create_index("ix_tiles_job_state", "tiles", ["job_id", "state"])

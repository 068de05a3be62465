"""The guard: the code log (every code run a browser sent a kernel) and daily bytes per workspace.

Revision ID: 0005_guard
Revises: 0004_user_subject
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.kernel.db import UTCDateTime

revision: str = "0005_guard"
down_revision: str | None = "0004_user_subject"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "code_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("time", UTCDateTime(timezone=True), nullable=False),
        sa.Column("username", sa.String(200), nullable=False),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("kernel_id", sa.String(64), nullable=False),
        sa.Column("session_id", sa.String(200), nullable=False),
        sa.Column("msg_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("code_sha256", sa.String(64), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("hash", name=op.f("uq_code_runs_hash")),
    )
    op.create_index("ix_code_runs_time", "code_runs", ["time"])
    op.create_index("ix_code_runs_username", "code_runs", ["username"])
    op.create_index("ix_code_runs_project", "code_runs", ["project"])
    op.create_table(
        "guard_usage",
        sa.Column("username", sa.String(200), primary_key=True),
        sa.Column("project", sa.String(200), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("sent_bytes", sa.BigInteger, nullable=False),
        sa.Column("cut_count", sa.Integer, nullable=False),
        sa.Column("updated", UTCDateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("guard_usage")
    op.drop_table("code_runs")

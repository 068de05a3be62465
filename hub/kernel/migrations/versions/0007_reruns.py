"""Re-runs: a request's notebook executed in a sealed container, and what it reproduced.

Revision ID: 0007_reruns
Revises: 0006_vote_hash
Create Date: 2026-12-05 11:25:09.750458
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.kernel.db


revision: str = "0007_reruns"
down_revision: str | None = "0006_vote_hash"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "egress_reruns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(length=40), nullable=False),
        sa.Column("notebook_file_id", sa.Integer(), nullable=False),
        sa.Column("notebook_sha256", sa.String(length=64), nullable=False),
        sa.Column("release", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("cancelled_by", sa.String(length=40), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("log", sa.Text(), nullable=False),
        sa.Column("results", sa.JSON(), nullable=True),
        sa.Column("created_at", hub.kernel.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", hub.kernel.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'done', 'failed', 'stopped')", name=op.f("ck_egress_reruns_status")
        ),
        sa.ForeignKeyConstraint(
            ["cancelled_by"], ["users.username"], name=op.f("fk_egress_reruns_cancelled_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["notebook_file_id"],
            ["egress_files.id"],
            name=op.f("fk_egress_reruns_notebook_file_id_egress_files"),
        ),
        sa.ForeignKeyConstraint(
            ["request_id"], ["egress_requests.id"], name=op.f("fk_egress_reruns_request_id_egress_requests")
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"], ["users.username"], name=op.f("fk_egress_reruns_requested_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_egress_reruns")),
    )
    with op.batch_alter_table("egress_reruns", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_egress_reruns_request_id"), ["request_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("egress_reruns", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_egress_reruns_request_id"))

    op.drop_table("egress_reruns")

"""A checker's vote names the file's SHA-256 it was cast on, so a vote cannot drift to other bytes.

Revision ID: 0006_vote_hash
Revises: 0005_guard
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006_vote_hash"
down_revision: str | None = "0005_guard"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("egress_reviews") as batch:
        batch.add_column(sa.Column("file_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("egress_reviews") as batch:
        batch.drop_column("file_sha256")

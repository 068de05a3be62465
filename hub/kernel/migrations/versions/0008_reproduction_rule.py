"""Projects may require outputs reproduced by a re-run; a checker's approval can be an override.

Revision ID: 0008_reproduction_rule
Revises: 0007_reruns
Create Date: 2026-12-05 11:33:46.130785
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.kernel.db


revision: str = "0008_reproduction_rule"
down_revision: str | None = "0007_reruns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("egress_reviews", schema=None) as batch_op:
        batch_op.add_column(sa.Column("override", sa.Boolean(), server_default=sa.false(), nullable=False))

    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("require_reproduction", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("require_reproduction")

    with op.batch_alter_table("egress_reviews", schema=None) as batch_op:
        batch_op.drop_column("override")

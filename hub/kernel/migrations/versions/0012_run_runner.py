"""Which process runs a provisioning run, so a run whose worker died is marked failed

Revision ID: 0012_run_runner
Revises: 0011_health_categories
Create Date: 2026-12-06 02:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_run_runner"
down_revision: str | None = "0011_health_categories"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Runs from before have no runner: if still "running", nothing runs them any more.
    op.add_column("provisioning_runs", sa.Column("runner", sa.String(length=40), server_default="", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("provisioning_runs") as batch:
        batch.drop_column("runner")

"""Projects: per-project overrides of the disclosure-check rules.

Revision ID: 0003_project_sdc_config
Revises: 0002_egress
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003_project_sdc_config"
down_revision: str | None = "0002_egress"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("sdc_config", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("sdc_config")

"""Each dataset's EHDS Art. 51 health categories (HealthDCAT-AP healthCategory)

Revision ID: 0011_health_categories
Revises: 0010_applications
Create Date: 2026-12-06 02:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_health_categories"
down_revision: str | None = "0010_applications"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Datasets registered before are catalogued as electronic health records until re-registered.
    op.add_column(
        "datasets",
        sa.Column("health_categories", sa.JSON(), server_default='["EHRS"]', nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("health_categories")

"""Users: the immutable subject an institutional identity provider knows them by.

Revision ID: 0004_user_subject
Revises: 0003_project_sdc_config
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004_user_subject"
down_revision: str | None = "0003_project_sdc_config"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("subject", sa.String(255), nullable=True))
        batch.create_unique_constraint("uq_users_subject", ["subject"])


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_subject", type_="unique")
        batch.drop_column("subject")

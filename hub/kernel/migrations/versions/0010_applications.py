"""Data access applications, their conversation and attachments, data permits, provisioning runs

Revision ID: 0010_applications
Revises: 0009_jobs
Create Date: 2026-12-05 21:10:45.199268
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.kernel.db


revision: str = "0010_applications"
down_revision: str | None = "0009_jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "provisioning_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project", sa.String(length=40), nullable=False),
        sa.Column("started_by", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("step", sa.String(length=200), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("release", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("started_at", hub.kernel.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", hub.kernel.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'published', 'failed')", name=op.f("ck_provisioning_runs_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provisioning_runs")),
    )
    with op.batch_alter_table("provisioning_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_provisioning_runs_project"), ["project"], unique=False)

    op.create_table(
        "applications",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.Column("project_slug", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("previous_id", sa.String(length=24), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("benefit", sa.Text(), nullable=False),
        sa.Column("data_form", sa.String(length=16), nullable=False),
        sa.Column("data_form_reason", sa.Text(), nullable=False),
        sa.Column("linkage", sa.Text(), nullable=False),
        sa.Column("ends_at", hub.kernel.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("researchers", sa.JSON(), nullable=False),
        sa.Column("safeguards", sa.Text(), nullable=False),
        sa.Column("ethics_ref", sa.String(length=200), nullable=False),
        sa.Column("datasets", sa.JSON(), nullable=False),
        sa.Column("attachment_name", sa.String(length=200), nullable=True),
        sa.Column("attachment_sha256", sa.String(length=64), nullable=True),
        sa.Column("created_at", hub.kernel.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", hub.kernel.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decided_at", hub.kernel.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "data_form IN ('anonymised', 'pseudonymised')", name=op.f("ck_applications_data_form")
        ),
        sa.CheckConstraint(
            "purpose IN ('art53-1-a', 'art53-1-b', 'art53-1-c', 'art53-1-d', 'art53-1-e', 'art53-1-f')",
            name=op.f("ck_applications_purpose"),
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'submitted', 'questions', 'returned', 'approved', 'rejected', 'withdrawn')",
            name=op.f("ck_applications_status"),
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"], ["users.id"], name=op.f("fk_applications_decided_by_id_users")
        ),
        sa.ForeignKeyConstraint(["lead_id"], ["users.id"], name=op.f("fk_applications_lead_id_users")),
        sa.ForeignKeyConstraint(
            ["previous_id"], ["applications.id"], name=op.f("fk_applications_previous_id_applications")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_applications_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_applications")),
    )
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_applications_lead_id"), ["lead_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_applications_project_slug"), ["project_slug"], unique=False)
        batch_op.create_index(batch_op.f("ix_applications_status"), ["status"], unique=False)

    op.create_table(
        "application_attachments",
        sa.Column("application_id", sa.String(length=24), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["applications.id"],
            name=op.f("fk_application_attachments_application_id_applications"),
        ),
        sa.PrimaryKeyConstraint("application_id", name=op.f("pk_application_attachments")),
    )
    op.create_table(
        "application_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("application_id", sa.String(length=24), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", hub.kernel.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["applications.id"],
            name=op.f("fk_application_messages_application_id_applications"),
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_application_messages_author_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_application_messages")),
    )
    with op.batch_alter_table("application_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_application_messages_application_id"), ["application_id"], unique=False
        )

    op.create_table(
        "permits",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("application_id", sa.String(length=24), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("issued_by_id", sa.Integer(), nullable=False),
        sa.Column("issued_at", hub.kernel.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", hub.kernel.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claims", sa.JSON(), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.CheckConstraint("status IN ('issued', 'superseded', 'revoked')", name=op.f("ck_permits_status")),
        sa.ForeignKeyConstraint(
            ["application_id"], ["applications.id"], name=op.f("fk_permits_application_id_applications")
        ),
        sa.ForeignKeyConstraint(["issued_by_id"], ["users.id"], name=op.f("fk_permits_issued_by_id_users")),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name=op.f("fk_permits_project_id_projects")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_permits")),
        sa.UniqueConstraint("application_id", name=op.f("uq_permits_application_id")),
    )
    with op.batch_alter_table("permits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_permits_project_id"), ["project_id"], unique=False)

    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("permit_id", sa.String(length=24), nullable=True))
        batch_op.create_index(batch_op.f("ix_grants_permit_id"), ["permit_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_grants_permit_id_permits"), "permits", ["permit_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_grants_permit_id_permits"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_grants_permit_id"))
        batch_op.drop_column("permit_id")

    with op.batch_alter_table("permits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_permits_project_id"))

    op.drop_table("permits")
    with op.batch_alter_table("application_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_application_messages_application_id"))

    op.drop_table("application_messages")
    op.drop_table("application_attachments")
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_applications_status"))
        batch_op.drop_index(batch_op.f("ix_applications_project_slug"))
        batch_op.drop_index(batch_op.f("ix_applications_lead_id"))

    op.drop_table("applications")
    with op.batch_alter_table("provisioning_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_provisioning_runs_project"))

    op.drop_table("provisioning_runs")

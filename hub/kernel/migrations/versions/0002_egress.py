"""Egress: requests, groups, files, reviews, comments, releases, downloads

Revision ID: 0002_egress
Revises: 0001_registry
Create Date: 2026-11-28 18:13:31.372289
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.kernel.db

revision: str = "0002_egress"
down_revision: str | None = "0001_registry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "egress_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_slug", sa.String(length=40), nullable=False),
        sa.Column("author", sa.String(length=40), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", hub.kernel.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", hub.kernel.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", hub.kernel.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decided_at", hub.kernel.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('draft', 'submitted', 'under_review', 'returned', 'approved', 'released', 'rejected', 'withdrawn', 'revoked')",
            name=op.f("ck_egress_requests_state"),
        ),
        sa.ForeignKeyConstraint(["author"], ["users.username"], name=op.f("fk_egress_requests_author_users")),
        sa.ForeignKeyConstraint(
            ["project_slug"], ["projects.slug"], name=op.f("fk_egress_requests_project_slug_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_egress_requests")),
    )
    with op.batch_alter_table("egress_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_egress_requests_author"), ["author"], unique=False)
        batch_op.create_index("ix_egress_requests_project_state", ["project_slug", "state"], unique=False)

    op.create_table(
        "egress_groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("controls", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["egress_requests.id"], name=op.f("fk_egress_groups_request_id_egress_requests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_egress_groups")),
        sa.UniqueConstraint("request_id", "name", name=op.f("uq_egress_groups_request_id_name")),
    )
    with op.batch_alter_table("egress_groups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_egress_groups_request_id"), ["request_id"], unique=False)

    op.create_table(
        "egress_releases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("bundle_name", sa.String(length=200), nullable=False),
        sa.Column("bundle_sha256", sa.String(length=64), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("released_by", sa.String(length=40), nullable=False),
        sa.Column("released_at", hub.kernel.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_by", sa.String(length=40), nullable=True),
        sa.Column("revoked_at", hub.kernel.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["released_by"], ["users.username"], name=op.f("fk_egress_releases_released_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["request_id"], ["egress_requests.id"], name=op.f("fk_egress_releases_request_id_egress_requests")
        ),
        sa.ForeignKeyConstraint(
            ["revoked_by"], ["users.username"], name=op.f("fk_egress_releases_revoked_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_egress_releases")),
        sa.UniqueConstraint("request_id", name=op.f("uq_egress_releases_request_id")),
    )
    op.create_table(
        "egress_downloads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=40), nullable=False),
        sa.Column("downloaded_at", hub.kernel.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["release_id"],
            ["egress_releases.id"],
            name=op.f("fk_egress_downloads_release_id_egress_releases"),
        ),
        sa.ForeignKeyConstraint(
            ["username"], ["users.username"], name=op.f("fk_egress_downloads_username_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_egress_downloads")),
    )
    with op.batch_alter_table("egress_downloads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_egress_downloads_release_id"), ["release_id"], unique=False)

    op.create_table(
        "egress_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("relpath", sa.String(length=1000), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("checks", sa.JSON(), nullable=True),
        sa.Column("added_at", hub.kernel.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("removed_at", hub.kernel.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('output', 'supporting')", name=op.f("ck_egress_files_kind")),
        sa.CheckConstraint("length(sha256) = 64", name=op.f("ck_egress_files_sha256")),
        sa.ForeignKeyConstraint(
            ["group_id"], ["egress_groups.id"], name=op.f("fk_egress_files_group_id_egress_groups")
        ),
        sa.ForeignKeyConstraint(
            ["request_id"], ["egress_requests.id"], name=op.f("fk_egress_files_request_id_egress_requests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_egress_files")),
    )
    with op.batch_alter_table("egress_files", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_egress_files_group_id"), ["group_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_egress_files_request_id"), ["request_id"], unique=False)

    op.create_table(
        "egress_comments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=True),
        sa.Column("author", sa.String(length=40), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("visibility", sa.String(length=16), nullable=False),
        sa.Column("created_at", hub.kernel.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "visibility IN ('checkers', 'author')", name=op.f("ck_egress_comments_visibility")
        ),
        sa.ForeignKeyConstraint(["author"], ["users.username"], name=op.f("fk_egress_comments_author_users")),
        sa.ForeignKeyConstraint(
            ["file_id"], ["egress_files.id"], name=op.f("fk_egress_comments_file_id_egress_files")
        ),
        sa.ForeignKeyConstraint(
            ["request_id"], ["egress_requests.id"], name=op.f("fk_egress_comments_request_id_egress_requests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_egress_comments")),
    )
    with op.batch_alter_table("egress_comments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_egress_comments_request_id"), ["request_id"], unique=False)

    op.create_table(
        "egress_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("file_version", sa.Integer(), nullable=False),
        sa.Column("checker", sa.String(length=40), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("created_at", hub.kernel.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "decision IN ('approve', 'changes', 'reject')", name=op.f("ck_egress_reviews_decision")
        ),
        sa.ForeignKeyConstraint(
            ["checker"], ["users.username"], name=op.f("fk_egress_reviews_checker_users")
        ),
        sa.ForeignKeyConstraint(
            ["file_id"], ["egress_files.id"], name=op.f("fk_egress_reviews_file_id_egress_files")
        ),
        sa.ForeignKeyConstraint(
            ["request_id"], ["egress_requests.id"], name=op.f("fk_egress_reviews_request_id_egress_requests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_egress_reviews")),
    )
    with op.batch_alter_table("egress_reviews", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_egress_reviews_file_id"), ["file_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_egress_reviews_request_id"), ["request_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("egress_reviews", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_egress_reviews_request_id"))
        batch_op.drop_index(batch_op.f("ix_egress_reviews_file_id"))

    op.drop_table("egress_reviews")
    with op.batch_alter_table("egress_comments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_egress_comments_request_id"))

    op.drop_table("egress_comments")
    with op.batch_alter_table("egress_files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_egress_files_request_id"))
        batch_op.drop_index(batch_op.f("ix_egress_files_group_id"))

    op.drop_table("egress_files")
    with op.batch_alter_table("egress_downloads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_egress_downloads_release_id"))

    op.drop_table("egress_downloads")
    op.drop_table("egress_releases")
    with op.batch_alter_table("egress_groups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_egress_groups_request_id"))

    op.drop_table("egress_groups")
    with op.batch_alter_table("egress_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_egress_requests_project_state")
        batch_op.drop_index(batch_op.f("ix_egress_requests_author"))

    op.drop_table("egress_requests")

"""Egress tables, on the registry's `Base`: requests, groups, files, reviews, comments, releases,
re-runs.

A file row is a slot in a request; its bytes are the blob named by `sha256`. Updating the file
bumps `version`, and only reviews of the current version count, which is how an updated file resets
its reviews while the history stays in the table.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.sql import false

from egress.review.workflow import Decision, FileKind, RerunStatus, State, Visibility
from hub.kernel.clock import utcnow
from hub.kernel.db import Base, UTCDateTime
from hub.registry.vocabulary import sql_in


class EgressRequest(Base):
    __tablename__ = "egress_requests"
    __table_args__ = (
        CheckConstraint(sql_in("state", State), name="state"),
        Index("ix_egress_requests_project_state", "project_slug", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_slug: Mapped[str] = mapped_column(ForeignKey("projects.slug"))
    author: Mapped[str] = mapped_column(ForeignKey("users.username"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), default=State.DRAFT.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    groups: Mapped[list[EgressGroup]] = relationship(
        back_populates="request", order_by="EgressGroup.id", cascade="all, delete-orphan"
    )
    files: Mapped[list[EgressFile]] = relationship(
        back_populates="request", order_by="EgressFile.id", cascade="all, delete-orphan"
    )
    release: Mapped[EgressRelease | None] = relationship(back_populates="request")


class EgressGroup(Base):
    __tablename__ = "egress_groups"
    __table_args__ = (UniqueConstraint("request_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("egress_requests.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    context: Mapped[str] = mapped_column(Text, default="")
    controls: Mapped[str] = mapped_column(Text, default="")

    request: Mapped[EgressRequest] = relationship(back_populates="groups")


class EgressFile(Base):
    __tablename__ = "egress_files"
    __table_args__ = (
        CheckConstraint(sql_in("kind", FileKind), name="kind"),
        CheckConstraint("length(sha256) = 64", name="sha256"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("egress_requests.id"), index=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("egress_groups.id"), index=True)
    relpath: Mapped[str] = mapped_column(String(1000))  # in the author's workspace
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Automated checks stored at submission: {"verdict": ..., "findings": [...]} of the SDC report.
    checks: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    request: Mapped[EgressRequest] = relationship(back_populates="files")
    group: Mapped[EgressGroup] = relationship()


class EgressReview(Base):
    """One vote of a checker on one version of a file; a later vote by the same checker replaces it."""

    __tablename__ = "egress_reviews"
    __table_args__ = (CheckConstraint(sql_in("decision", Decision), name="decision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("egress_requests.id"), index=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("egress_files.id"), index=True)
    file_version: Mapped[int] = mapped_column(Integer)
    file_sha256: Mapped[str | None] = mapped_column(String(64))  # the bytes the checker saw
    checker: Mapped[str] = mapped_column(ForeignKey("users.username"))
    decision: Mapped[str] = mapped_column(String(16))
    # An approval of a file no re-run reproduced, where the project requires reproduction.
    override: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EgressComment(Base):
    __tablename__ = "egress_comments"
    __table_args__ = (CheckConstraint(sql_in("visibility", Visibility), name="visibility"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("egress_requests.id"), index=True)
    file_id: Mapped[int | None] = mapped_column(ForeignKey("egress_files.id"), nullable=True)
    author: Mapped[str] = mapped_column(ForeignKey("users.username"))
    body: Mapped[str] = mapped_column(Text)
    visibility: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EgressRelease(Base):
    __tablename__ = "egress_releases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("egress_requests.id"), unique=True)
    bundle_name: Mapped[str] = mapped_column(String(200))  # under settings.egress_dir/releases
    bundle_sha256: Mapped[str] = mapped_column(String(64))
    record: Mapped[str] = mapped_column(Text)  # the signed decision record (JWT)
    kid: Mapped[str] = mapped_column(String(64))
    released_by: Mapped[str] = mapped_column(ForeignKey("users.username"))
    released_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_by: Mapped[str | None] = mapped_column(ForeignKey("users.username"), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    request: Mapped[EgressRequest] = relationship(back_populates="release")
    downloads: Mapped[list[EgressDownload]] = relationship(order_by="EgressDownload.id")


class EgressDownload(Base):
    __tablename__ = "egress_downloads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("egress_releases.id"), index=True)
    username: Mapped[str] = mapped_column(ForeignKey("users.username"))
    downloaded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EgressRerun(Base):
    """One re-execution of a request's notebook in a sealed container, and what it reproduced."""

    __tablename__ = "egress_reruns"
    __table_args__ = (CheckConstraint(sql_in("status", RerunStatus), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("egress_requests.id"), index=True)
    requested_by: Mapped[str] = mapped_column(ForeignKey("users.username"))
    notebook_file_id: Mapped[int] = mapped_column(ForeignKey("egress_files.id"))
    notebook_sha256: Mapped[str] = mapped_column(String(64))
    release: Mapped[int] = mapped_column(Integer)  # the project's release it ran on
    status: Mapped[str] = mapped_column(String(16), default=RerunStatus.QUEUED.value)
    cancelled_by: Mapped[str | None] = mapped_column(ForeignKey("users.username"), nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    log: Mapped[str] = mapped_column(Text, default="")
    # {output file id: {"outcome": ..., "detail": ...}} (egress.review.reproduce)
    results: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

"""The jobs table (registry database: the hub, the runner and the command line read it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hub.jobs.rules import JobStatus
from hub.kernel.clock import utcnow
from hub.kernel.db import Base, UTCDateTime
from hub.registry.vocabulary import sql_in


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (CheckConstraint(sql_in("status", JobStatus), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(40), index=True)
    project: Mapped[str] = mapped_column(String(40), index=True)
    notebook: Mapped[str] = mapped_column(String(1000))  # relative to the project home
    notebook_sha256: Mapped[str] = mapped_column(String(64))  # of the copy the job runs
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value, index=True)
    reason: Mapped[str] = mapped_column(Text, default="")  # why it failed or stopped
    release: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the release it ran on
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cancelled_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    @property
    def folder(self) -> str:
        """Where in the home the job writes its executed notebook and log."""
        return f"jobs/{self.id}"

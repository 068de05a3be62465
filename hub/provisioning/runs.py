"""Provisioning runs the portal starts, with the progress a browser polls.

A run is a row, so every portal worker (and the page after a reload) sees the same progress; the
build itself is hub.provisioning.provision_project in a thread of the process that started it, which
the row names (its runner: pid and start time, as a pid alone can be reused). A run whose runner is
gone, because that worker or the whole portal died, is marked failed the next time anyone looks at
it and when the portal starts; the project's data are as the last complete build left them (builds
publish atomically). The portal runs on one host, so /proc tells whether a runner is alive.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Integer, String, Text, select, update
from sqlalchemy.orm import Mapped, mapped_column

from hub.kernel.clock import utcnow
from hub.kernel.db import Base, UTCDateTime, session_scope
from hub.kernel.lifecycle import process_identity
from hub.kernel.settings import Settings
from hub.provisioning.provision import provision_project
from hub.registry.vocabulary import sql_in

log = logging.getLogger(__name__)


class RunStatus(StrEnum):
    RUNNING = "running"
    PUBLISHED = "published"
    FAILED = "failed"


class ProvisioningRun(Base):
    __tablename__ = "provisioning_runs"
    __table_args__ = (CheckConstraint(sql_in("status", RunStatus), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project: Mapped[str] = mapped_column(String(40), index=True)
    started_by: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.RUNNING.value)
    step: Mapped[str] = mapped_column(String(200), default="starting")
    runner: Mapped[str] = mapped_column(String(40), default="", server_default="")  # "pid:start time"
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=1)
    release: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    def as_dict(self) -> dict[str, object]:
        return {
            "status": self.status,
            "step": self.step,
            "done": self.done,
            "total": self.total,
            "release": self.release,
            "error": self.error,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


def _runner_gone(runner: str) -> bool:
    pid = runner.partition(":")[0]
    return not pid.isdigit() or process_identity(int(pid)) != runner


def fail_orphaned_runs(settings: Settings, reason: str = "the portal process running it stopped") -> None:
    """Mark failed every run still "running" whose runner process is gone."""
    with session_scope(settings) as s:
        for run in s.execute(
            select(ProvisioningRun).where(ProvisioningRun.status == RunStatus.RUNNING)
        ).scalars():
            if _runner_gone(run.runner):
                run.status, run.error, run.finished_at = RunStatus.FAILED.value, reason, utcnow()


def latest_run(settings: Settings, slug: str) -> dict[str, object] | None:
    def read() -> tuple[dict[str, object], str] | None:
        with session_scope(settings, readonly=True) as s:
            run = s.execute(
                select(ProvisioningRun)
                .where(ProvisioningRun.project == slug)
                .order_by(ProvisioningRun.id.desc())
                .limit(1)
            ).scalar_one_or_none()
            return (run.as_dict(), run.runner) if run else None

    found = read()
    if found and found[0]["status"] == RunStatus.RUNNING and _runner_gone(found[1]):
        fail_orphaned_runs(settings)  # its worker died mid-build: say so rather than "running" forever
        found = read()
    return found[0] if found else None


def start_run(settings: Settings, slug: str, actor: str) -> int:
    """Provision `slug` in a background thread as `actor`; the run's id, for its progress."""
    with session_scope(settings) as s:
        run = ProvisioningRun(project=slug, started_by=actor, runner=process_identity(os.getpid()) or "")
        s.add(run)
        s.flush()
        run_id = run.id

    def progress(step: str, done: int, total: int) -> None:
        with session_scope(settings) as s:
            s.execute(
                update(ProvisioningRun)
                .where(ProvisioningRun.id == run_id)
                .values(step=step, done=done, total=max(total, 1))
            )

    def finish(**values: object) -> None:
        with session_scope(settings) as s:
            s.execute(
                update(ProvisioningRun)
                .where(ProvisioningRun.id == run_id)
                .values(finished_at=utcnow(), **values)
            )

    def build() -> None:
        try:
            result = provision_project(settings, slug, actor, progress)
        except Exception as exc:  # the page shows why; the log keeps the traceback
            log.exception("provisioning %s failed", slug)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            finish(status=RunStatus.FAILED, error=first)
        else:
            finish(status=RunStatus.PUBLISHED, step="published", release=result.release)

    threading.Thread(target=build, name=f"provision-{slug}", daemon=True).start()
    return run_id

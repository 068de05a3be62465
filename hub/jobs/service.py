"""What people do with jobs: submit one, see theirs, cancel one. Every change is audited.

A submitted notebook is copied from the home at once (through hub.host.homefiles: no link
followed), its outputs stripped, hashed, and its code written to the code log: what runs is what was
recorded, whatever the researcher changes in her home afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.host.homefiles import Refused, open_home_file
from hub.jobs.crate import job_crate
from hub.jobs.models import Job
from hub.jobs.rules import (
    FINISHED,
    MAX_NOTEBOOK_BYTES,
    MAX_WAITING_PER_USER,
    JobNotFound,
    JobRefused,
    JobStatus,
    check_notebook_path,
    check_parameters,
)
from hub.kernel import audit, codelog
from hub.kernel.audit_actions import AuditAction as A
from hub.kernel.clock import utcnow
from hub.kernel.db import session_scope, valid_row_id
from hub.kernel.settings import Settings
from hub.registry.access import AccessDenied, workspace_permit

SNAPSHOT = "notebook.ipynb"


def snapshot_path(settings: Settings, job_id: int) -> Path:
    """The copy of the notebook a job runs (host side, mounted read-only into its container)."""
    return settings.state_dir / "jobs" / str(job_id) / SNAPSHOT


def stripped_notebook(data: bytes, shown: str) -> tuple[bytes, str]:
    """The notebook without its outputs (they may hold data; the job makes its own), and its code."""
    try:
        nb = json.loads(data)
        cells = nb["cells"]
        for cell in cells:
            if cell.get("cell_type") == "code":
                cell["outputs"], cell["execution_count"] = [], None
        code = "\n\n".join(
            "".join(c["source"]) if isinstance(c["source"], list) else str(c["source"])
            for c in cells
            if c.get("cell_type") == "code"
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        raise JobRefused(
            f"{shown} is not a readable Jupyter notebook; open and save it in JupyterLab."
        ) from None
    return json.dumps(nb, ensure_ascii=False, indent=1).encode(), code


def job_view(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "project": job.project,
        "username": job.username,
        "notebook": job.notebook,
        "notebook_sha256": job.notebook_sha256,
        "parameters": job.parameters,
        "status": job.status,
        "reason": job.reason,
        "release": job.release,
        "exit_code": job.exit_code,
        "folder": job.folder,
        "executed": f"{job.folder}/{PurePosixPath(job.notebook).name}",
        "log": f"{job.folder}/log.txt",
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


class Jobs:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _refused(self, who: str, project: str, what: str, exc: Exception) -> None:
        with session_scope(self.settings) as s:
            audit.record(s, who, A.JOB_REFUSED, "project", project, {"operation": what, "reason": str(exc)})

    def submit(self, who: str, project: str, notebook: str, parameters: Any = None) -> dict[str, Any]:
        try:
            return self._submit(who, project, notebook, parameters)
        except (JobRefused, AccessDenied) as exc:
            self._refused(who, project, "submit", exc)
            if isinstance(exc, AccessDenied):
                raise JobRefused(f"No job can run: {exc}.") from None
            raise

    def _submit(self, who: str, project: str, notebook: str, parameters: Any) -> dict[str, Any]:
        relpath = check_notebook_path(notebook)
        params = check_parameters(parameters)
        with session_scope(self.settings) as s:
            permit = workspace_permit(s, who, project, self.settings)
            waiting = s.execute(
                select(func.count(Job.id)).where(
                    Job.username == who, Job.project == project, Job.status == JobStatus.QUEUED.value
                )
            ).scalar_one()
            if waiting >= MAX_WAITING_PER_USER:
                raise JobRefused(
                    f"You have {waiting} jobs waiting in {project}; cancel some or wait for them to start."
                )
            try:
                with open_home_file(permit.home_dir, relpath, MAX_NOTEBOOK_BYTES) as f:
                    data = os.read(f.fd, MAX_NOTEBOOK_BYTES + 1)
            except Refused as exc:
                raise JobRefused(str(exc)) from None
            runnable, code = stripped_notebook(data, relpath)
            sha = hashlib.sha256(runnable).hexdigest()
            job = Job(
                username=who,
                project=project,
                notebook=relpath,
                notebook_sha256=sha,
                parameters=params,
                status=JobStatus.QUEUED.value,
                reason="",
            )
            s.add(job)
            s.flush()
            path = snapshot_path(self.settings, job.id)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.write_bytes(runnable)
            path.chmod(0o444)  # read by the job's user through a read-only mount; its folder is 0700
            audit.record(
                s,
                who,
                A.JOB_SUBMIT,
                "project",
                project,
                {"job": job.id, "notebook": relpath, "sha256": sha, "parameters": params},
            )
            codelog.append(
                s,
                [
                    codelog.Run(
                        time=utcnow(),
                        username=who,
                        project=project,
                        kernel_id=f"job-{job.id}",
                        session_id="",
                        msg_id=sha,
                        kind="job",
                        code=code,
                    )
                ],
            )
            return job_view(job)

    def _own(self, s: Session, who: str, project: str, job_id: int) -> Job:
        job = s.get(Job, job_id) if valid_row_id(job_id) else None
        if job is None or job.username != who or job.project != project:
            raise JobNotFound(f"You have no job {job_id} in {project}.")
        return job

    def get(self, who: str, project: str, job_id: int) -> dict[str, Any]:
        with session_scope(self.settings, readonly=True) as s:
            return job_view(self._own(s, who, project, job_id))

    def crate(self, who: str, project: str, job_id: int) -> dict[str, Any]:
        """The job's Five Safes RO-Crate (hub.jobs.crate), for its folder in the home."""
        with session_scope(self.settings, readonly=True) as s:
            return json.loads(job_crate(self._own(s, who, project, job_id), self.settings.domain))

    def list(self, who: str, project: str, limit: int = 100) -> list[dict[str, Any]]:
        with session_scope(self.settings, readonly=True) as s:
            rows = s.execute(
                select(Job)
                .where(Job.username == who, Job.project == project)
                .order_by(Job.id.desc())
                .limit(limit)
            ).scalars()
            return [job_view(j) for j in rows]

    def cancel(self, who: str, project: str, job_id: int) -> dict[str, Any]:
        try:
            with session_scope(self.settings) as s:
                job = self._own(s, who, project, job_id)
                if JobStatus(job.status) in FINISHED or job.cancelled_by:
                    raise JobRefused(f"Job {job_id} has already ended ({job.status}).")
                job.cancelled_by, was = who, job.status
                if was == JobStatus.QUEUED:  # never started: it ends here; a running one, in the runner
                    job.status, job.reason, job.finished_at = (
                        JobStatus.STOPPED.value,
                        f"cancelled by {who}",
                        utcnow(),
                    )
                    snapshot_path(self.settings, job.id).unlink(missing_ok=True)
                audit.record(s, who, A.JOB_CANCEL, "project", project, {"job": job_id, "was": was})
                return job_view(job)
        except JobRefused as exc:
            self._refused(who, project, "cancel", exc)
            raise

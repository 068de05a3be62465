"""The job runner: starts waiting jobs within the limits, watches running ones, records how they end.

One runner per host (`python -m hub.jobs`, a managed service of the hub). A job's container is
named `<prefix>-job-<id>` and outlives the runner: a runner that starts again (hub restart) adopts the
running jobs it finds and goes on enforcing their time limits, cancellations and permits.

While a job runs, its permit is asked again every few seconds: a researcher removed from the project,
a suspended or closed project, a disabled account or a withdrawn release stops it, as it stops her
workspace.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from pathlib import PurePosixPath

import docker
import docker.errors
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.host import swarm
from hub.host.hardening import HOME
from hub.host.sealed import Sealed, SealedRunError, find_sealed, papermill_command, start_sealed, wait_sealed
from hub.jobs.models import Job
from hub.jobs.rules import JobStatus, Waiting, next_to_start
from hub.jobs.service import snapshot_path
from hub.kernel import audit
from hub.kernel.audit_actions import AuditAction as A
from hub.kernel.clock import utcnow
from hub.kernel.db import session_scope
from hub.kernel.settings import Settings
from hub.registry.access import AccessDenied, project_limits, workspace_permit
from hub.registry.models import Project

log = logging.getLogger("tre.jobs")
RUNNER = "tre-jobs"  # the actor of the runner's audit events
INPUT = "/opt/tre/job/notebook.ipynb"  # where the job's copy of the notebook is mounted
PERMIT_CHECK_SECONDS = 5.0
REASON_LIMIT = 2000


def container_name(settings: Settings, job_id: int) -> str:
    """<prefix>-job-<id>: never a workspace's name, which always holds "--"."""
    return f"{settings.container_prefix}-job-{job_id}"


class JobRunner:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.watching: dict[int, threading.Thread] = {}

    def tick(self) -> None:
        """One round: adopt running jobs nobody watches, then start what may start."""
        self.watching = {i: t for i, t in self.watching.items() if t.is_alive()}
        self._adopt()
        self._start_waiting()

    def run_forever(self, every: float = 1.0) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # one failed round must not end the runner: log it, try again
                log.exception("job round failed")
            time.sleep(every)

    # --- starting ----------------------------------------------------------------------------------

    def _start_waiting(self) -> None:
        with session_scope(self.settings, readonly=True) as s:
            waiting = [
                Waiting(j.id, j.project)
                for j in s.execute(select(Job).where(Job.status == JobStatus.QUEUED.value)).scalars()
            ]
            if not waiting:
                return
            running = dict(
                s.execute(
                    select(Job.project, func.count(Job.id))
                    .where(Job.status == JobStatus.RUNNING.value)
                    .group_by(Job.project)
                ).all()
            )
            projects = {w.project for w in waiting}
            limits = {
                p.slug: project_limits(p).jobs
                for p in s.execute(select(Project).where(Project.slug.in_(projects))).scalars()
            }
        free = self.settings.jobs_at_once - sum(running.values())
        for job_id in next_to_start(waiting, running, limits, free):
            self._start(job_id)

    def _start(self, job_id: int) -> None:
        settings = self.settings
        with session_scope(settings) as s:
            job = s.get(Job, job_id)
            if job is None or job.status != JobStatus.QUEUED:  # cancelled meanwhile
                return
            try:
                permit = workspace_permit(s, job.username, job.project, settings)
            except AccessDenied as exc:
                self._end(s, job, JobStatus.STOPPED, None, f"access withdrawn: {exc}")
                return
            job.status, job.started_at, job.release = JobStatus.RUNNING.value, utcnow(), permit.release_number
            audit.record(
                s,
                RUNNER,
                A.JOB_START,
                "project",
                job.project,
                {
                    "job": job.id,
                    "release": permit.release_number,
                    "container": container_name(settings, job_id),
                },
            )
            notebook, parameters, folder = PurePosixPath(job.notebook), dict(job.parameters), job.folder
        out = f"{HOME}/{folder}"
        command = papermill_command(
            INPUT, f"{out}/{notebook.name}", str(PurePosixPath(HOME) / notebook.parent), parameters, log=True
        )
        # The container makes its own output folder and log (nothing on the host writes into a home
        # the researcher controls), and the log stays in the home: cell output may hold data.
        shell = ["sh", "-c", 'mkdir -p "$0" && exec "$@" >"$0/log.txt" 2>&1', out, *command]
        mounts = [
            docker.types.Mount("/data", str(permit.release_dir), type="bind", read_only=True),
            docker.types.Mount(HOME, str(permit.home_dir), type="bind", read_only=False),
            docker.types.Mount(INPUT, str(snapshot_path(settings, job_id)), type="bind", read_only=True),
        ]
        lim = permit.limits
        try:
            container = start_sealed(
                settings.image,
                mounts,
                shell,
                mem=str(lim.mem).upper(),
                cpus=lim.cpu,
                pids=lim.pids,
                name=container_name(self.settings, job_id),
                swarm_network=swarm.sealed_runs_on(settings),
                labels={
                    "org.tre.job": str(job_id),
                    "org.tre.user": permit.username,
                    "org.tre.project": permit.project_slug,
                    "org.tre.release": str(permit.release_number),
                },
            )
        except SealedRunError as exc:
            self._finish(job_id, JobStatus.FAILED, None, str(exc))
            return
        self._watch(job_id, container)

    # --- watching ----------------------------------------------------------------------------------

    def _adopt(self) -> None:
        with session_scope(self.settings, readonly=True) as s:
            running = s.execute(select(Job.id).where(Job.status == JobStatus.RUNNING.value)).scalars().all()
        for job_id in running:
            if job_id in self.watching:
                continue
            container = find_sealed(container_name(self.settings, job_id), self.settings.engine == "swarm")
            if container is None:
                self._finish(
                    job_id, JobStatus.FAILED, None, "its container is gone (was the host restarted?)"
                )
                continue
            log.info("adopting running job %s", job_id)
            self._watch(job_id, container)

    def _watch(self, job_id: int, container: Sealed) -> None:
        thread = threading.Thread(
            target=self._wait, args=(job_id, container), name=f"job-{job_id}", daemon=True
        )
        self.watching[job_id] = thread
        thread.start()

    def _reason_to_stop(self, job_id: int) -> str:
        with session_scope(self.settings, readonly=True) as s:
            job = s.get(Job, job_id)
            if job is None:
                return "its record is gone"
            if job.cancelled_by:
                return f"cancelled by {job.cancelled_by}"
            try:
                permit = workspace_permit(s, job.username, job.project, self.settings)
            except AccessDenied as exc:
                return f"access withdrawn: {exc}"
            seconds = permit.limits.job_seconds  # the permit carries the project's limits
            if utcnow() - (job.started_at or utcnow()) > timedelta(seconds=seconds):
                return f"it ran longer than the project's limit of {seconds} s"
            if (
                permit.release_number != job.release
                and not (permit.release_dir.parent / str(job.release)).is_dir()
            ):
                return f"release {job.release} was withdrawn"
        return ""

    def _wait(self, job_id: int, container: Sealed) -> None:
        next_check = 0.0
        checked = ""

        def reason() -> str:
            nonlocal next_check, checked
            if time.monotonic() >= next_check:
                checked, next_check = self._reason_to_stop(job_id), time.monotonic() + PERMIT_CHECK_SECONDS
            return checked

        try:
            exit_code, stopped = wait_sealed(container, reason)
            tail = container.logs(tail=20).strip()
            container.remove()
        except docker.errors.DockerException as exc:
            self._finish(job_id, JobStatus.FAILED, None, f"the container failed: {exc}")
            return
        if stopped:
            self._finish(job_id, JobStatus.STOPPED, None, stopped)
        elif exit_code == 0:
            self._finish(job_id, JobStatus.DONE, 0, "")
        else:
            why = tail or "a cell raised an error: see the log in the job's folder"
            self._finish(job_id, JobStatus.FAILED, exit_code, why)

    def _finish(self, job_id: int, status: JobStatus, exit_code: int | None, reason: str) -> None:
        with session_scope(self.settings) as s:
            job = s.get(Job, job_id)
            if job is not None:
                self._end(s, job, status, exit_code, reason)

    def _end(self, s: Session, job: Job, status: JobStatus, exit_code: int | None, reason: str) -> None:
        job.status, job.exit_code, job.reason = status.value, exit_code, reason[-REASON_LIMIT:]
        job.finished_at = utcnow()
        snapshot_path(self.settings, job.id).unlink(missing_ok=True)
        audit.record(
            s,
            RUNNER,
            A.JOB_FINISH,
            "project",
            job.project,
            {"job": job.id, "status": status.value, "exit_code": exit_code, "reason": job.reason},
        )
        log.info("job %s %s %s", job.id, status.value, reason)

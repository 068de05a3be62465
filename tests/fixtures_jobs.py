"""Helpers for the jobs tests: a notebook put into a home as the workspace user, a job submitted
from inside a workspace, a job's row."""

from __future__ import annotations

import json
import os
import subprocess
import time

from tests.fixtures_hub import Hub, docker_exec


def put_notebook(hub: Hub, user: str, project: str, relpath: str, data: bytes) -> None:
    home = hub.settings.home_dir(project, user)
    path = home / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    for p in (path, *[q for q in path.parents if q.is_relative_to(home)]):
        os.chown(p, 1000, 1000)


def job_row(hub: Hub, job_id: int):
    from hub.jobs.models import Job
    from hub.kernel.db import session_scope

    with session_scope(hub.settings, readonly=True) as s:
        job = s.get(Job, job_id)
        s.expunge(job)
        return job


def wait_status(hub: Hub, job_id: int, wanted: set[str], timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = job_row(hub, job_id)
        if job.status in wanted:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {job.status} after {timeout} s ({job.reason})\n{hub.tail()}")


def job_container(hub: Hub, job_id: int, timeout: float = 60) -> dict:
    """`docker inspect` of the job's container (on a swarm, `docker service inspect` of its service)
    once the runner has made it. A job is marked running before its container exists, so that a
    cancel in between reaches the container; under load that gap lasted past a first inspect."""
    from hub.jobs.runner import container_name

    name = container_name(hub.settings, job_id)
    command = (
        ["docker", "service", "inspect", name]
        if hub.settings.engine == "swarm"
        else ["docker", "inspect", name]
    )
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(command, capture_output=True, text=True, check=False)
        if out.returncode == 0:
            return json.loads(out.stdout)[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} has no container {name} after {timeout} s: {out.stderr}")
        time.sleep(0.2)


def submit_inside(hub: Hub, user: str, project: str, arguments: str) -> int:
    """jobs.submit(<arguments>) run by Python inside the workspace; the job's id."""
    code = f"from tre_notebook import jobs; print(jobs.submit({arguments}).id)"
    out = docker_exec(hub.container(user, project), "python", "-c", code, timeout=60)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())

"""A job's Five Safes RO-Crate (hub.kernel.fivesafes): the run request, its parameters, the data
release it ran on and the permit check, for the job's folder in the researcher's home.

The crate's root is that folder (`jobs/<id>/`): the executed notebook and the log are its files. The
host never writes into a home, so the hub hands the crate out (`GET /hub/api/tre/jobs/<id>/crate`)
and `tre_notebook.jobs` writes it there from inside the workspace.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from hub.jobs.models import Job
from hub.jobs.rules import JobStatus
from hub.kernel.clock import utcnow
from hub.kernel.fivesafes import COMPLETED, FAILED, FiveSafesCrate, ref


def job_crate(job: Job, tre: str) -> bytes:
    name = PurePosixPath(job.notebook).name
    ended = job.finished_at or utcnow()
    crate = FiveSafesCrate(
        f"Job {job.id}: {job.notebook}",
        f"A notebook run by {job.username} as a job in project {job.project}, in a sealed container.",
        ended.isoformat(),
        job.project,
        tre,
    )
    notebook = crate.entity(
        "#notebook", **{"@type": "SoftwareSourceCode", "name": job.notebook, "sha256": job.notebook_sha256}
    )
    inputs = [
        ref(
            crate.entity(
                f"#parameter-{key}",
                **{"@type": "PropertyValue", "name": key, "value": json.dumps(value)},
            )
        )
        for key, value in sorted(job.parameters.items())
    ]
    if job.release is not None:
        release = crate.entity(
            f"#data-release-{job.release}",
            **{"@type": "Dataset", "name": f"{job.project} data release {job.release}"},
        )
        inputs.insert(0, ref(release))
    done = job.status == JobStatus.DONE
    outputs = (
        [ref(crate.file(name, None, None)), ref(crate.file("log.txt", None, None))] if job.started_at else []
    )
    props = {
        "name": f"Job {job.id} of {job.notebook}",
        "instrument": ref(notebook),
        "object": inputs,
        "result": outputs,
        "agent": ref(crate.person(job.username)),
        "actionStatus": COMPLETED if done else FAILED,
        "endTime": ended.isoformat(),
    }
    if job.started_at:
        props["startTime"] = job.started_at.isoformat()
    if job.reason:
        props["error"] = job.reason
    crate.run(f"#job-{job.id}", **props)
    started = job.started_at is not None
    what = (
        f"permit checked at the start: {job.username} in {job.project}, on release {job.release}"
        if started
        else f"not started: {job.reason}"
    )
    crate.assess(
        "#permit", "ValidationCheck", ref(notebook), crate.publisher, started, what, props.get("startTime")
    )
    return crate.to_bytes()

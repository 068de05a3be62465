"""What a job may be and when it may start: pure decisions, no I/O."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any

PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_PARAMETERS_BYTES = 16_384  # parameters are settings (a year, a threshold), not data
MAX_WAITING_PER_USER = 20  # queued jobs one person may have in a project
MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"  # papermill ran every cell
    FAILED = "failed"  # a cell raised, or the container could not run
    STOPPED = "stopped"  # cancelled, over its time limit, or access withdrawn


FINISHED = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.STOPPED})


class JobRefused(Exception):
    """A job that cannot be submitted or changed; the message says what to do instead."""

    status = 400


class JobNotFound(JobRefused):
    status = 404


class JobForbidden(JobRefused):
    status = 403


def check_notebook_path(relpath: str) -> str:
    """A notebook path relative to the home (the safe open itself happens in hub.host.homefiles)."""
    path = PurePosixPath(relpath)
    if path.suffix != ".ipynb":
        raise JobRefused(f"{relpath!r} is not a notebook: a job runs an .ipynb file from your home folder.")
    if path.parts and path.parts[0] == "jobs":
        raise JobRefused("Notebooks under jobs/ are the results of earlier jobs; copy one out to run it.")
    return str(path)


def check_parameters(parameters: Any) -> dict[str, Any]:
    """Papermill parameters: names that are Python identifiers, JSON values, a small total."""
    if parameters is None:
        return {}
    if not isinstance(parameters, Mapping):
        raise JobRefused("Parameters are a mapping of names to values, e.g. {'year': 2021}.")
    for name in parameters:
        if not isinstance(name, str) or not PARAMETER_NAME.match(name):
            raise JobRefused(f"{name!r} is not a parameter name: use a Python identifier.")
    try:
        size = len(json.dumps(parameters))
    except (TypeError, ValueError):
        raise JobRefused("Parameter values are numbers, text, true/false, null, lists or mappings.") from None
    if size > MAX_PARAMETERS_BYTES:
        raise JobRefused(
            f"The parameters are {size:,} bytes; the limit is {MAX_PARAMETERS_BYTES:,}. "
            "Parameters are settings: put data in a file in your home and pass its name."
        )
    return dict(parameters)


@dataclass(frozen=True)
class Waiting:
    id: int
    project: str


def next_to_start(
    waiting: Iterable[Waiting],
    running_per_project: Mapping[str, int],
    project_limit: Mapping[str, int],
    host_free: int,
) -> list[int]:
    """The waiting jobs to start now, oldest first: within each project's limit and the host's slots."""
    running = dict(running_per_project)
    chosen: list[int] = []
    for job in sorted(waiting, key=lambda w: w.id):
        if len(chosen) >= host_free:
            break
        if running.get(job.project, 0) < project_limit.get(job.project, 0):
            chosen.append(job.id)
            running[job.project] = running.get(job.project, 0) + 1
    return chosen

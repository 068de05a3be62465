"""Run a notebook as a job: in a container of its own, with parameters, outliving this workspace.

    from tre_notebook import jobs
    job = jobs.submit("analysis/train.ipynb", {"year": 2021})
    job.wait()            # or come back later: jobs.list()
    print(job.log())

Or the command, in a cell (workspaces have no terminal): `!tre-job run analysis/train.ipynb -p year=2021`,
`!tre-job list`, `!tre-job log 7`, `!tre-job cancel 7`, `!tre-job crate 7` (the job's Five Safes
RO-Crate, into its folder).

The job runs a copy of the notebook as it is now (save it first), on this project's data, with no
network, and writes the executed notebook and its log to `jobs/<id>/` in your home; whatever the
notebook itself saves lands where it saves it, as in the workspace. The hub's answer says why a job
waits, failed or stopped (time limit, cancelled, access withdrawn).
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOME = Path(os.environ.get("HOME", "/home/jovyan"))
FINISHED = {"done", "failed", "stopped"}


class JobError(RuntimeError):
    """The hub refused (the message says why) or could not be reached."""


def _call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    try:
        api, token = os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"]
    except KeyError:
        raise JobError("Jobs are submitted from a TRE workspace (no hub API in this environment).") from None
    request = urllib.request.Request(  # noqa: S310 - the hub API URL the spawner gave us
        f"{api.rstrip('/')}/tre/jobs{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - the hub's own URL
            return json.load(answer)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc).get("message", "")
        except ValueError:
            message = ""
        raise JobError(message or f"the hub answered {exc.code}") from None
    except urllib.error.URLError as exc:
        raise JobError(f"the hub could not be reached: {exc.reason}") from None


@dataclass
class Job:
    """A job as the hub last described it; `refresh()` asks again."""

    info: dict[str, Any]

    @property
    def id(self) -> int:
        return int(self.info["id"])

    @property
    def status(self) -> str:
        return str(self.info["status"])

    def refresh(self) -> Job:
        self.info = _call("GET", f"/{self.id}")
        return self

    def wait(self, timeout: float | None = None, every: float = 2.0) -> Job:
        """Block until the job has ended (or `timeout` seconds passed); returns it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.refresh().status not in FINISHED:
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(every)
        return self

    def cancel(self) -> Job:
        self.info = _call("POST", f"/{self.id}/cancel", {})
        return self

    def log(self) -> str:
        """The job's log (papermill's, with every cell's output), from its folder in your home."""
        path = HOME / self.info["log"]
        return path.read_text(errors="replace") if path.exists() else "(no log yet)"

    def crate(self) -> Path:
        """Write the job's Five Safes RO-Crate (the run, its parameters, the data release, the permit
        check) into its folder, beside the executed notebook and the log; returns its path."""
        path = HOME / self.info["folder"] / "ro-crate-metadata.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_call("GET", f"/{self.id}/crate"), indent=1))
        return path

    @property
    def executed(self) -> Path:
        """The executed notebook, once the job ran."""
        return HOME / self.info["executed"]

    def __repr__(self) -> str:
        why = f" ({self.info['reason']})" if self.info.get("reason") else ""
        return f"<job {self.id} {self.info['notebook']}: {self.status}{why}>"


class JobList(list):
    def _repr_html_(self) -> str:
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(j.info.get(k) or ''))}</td>"
                for k in ("id", "notebook", "status", "reason", "created_at", "finished_at")
            )
            + "</tr>"
            for j in self
        )
        head = "".join(f"<th>{h}</th>" for h in ("job", "notebook", "status", "why", "asked", "ended"))
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def submit(notebook: str | Path, parameters: dict[str, Any] | None = None) -> Job:
    """Run `notebook` (a path in your home) as a job with papermill `parameters`; returns at once."""
    path = Path(notebook)
    if path.is_absolute():
        try:
            path = path.relative_to(HOME)
        except ValueError:
            raise JobError(f"{notebook} is not in your home folder ({HOME}).") from None
    return Job(_call("POST", "", {"notebook": path.as_posix(), "parameters": parameters or {}}))


def get(job_id: int) -> Job:
    return Job(_call("GET", f"/{int(job_id)}"))


def list() -> JobList:
    """Your jobs in this project, newest first."""
    return JobList(Job(j) for j in _call("GET", "")["jobs"])


def _parameter(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: write a parameter as name=value")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value  # plain text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tre-job", description="Run notebooks as jobs (see `tre_notebook.jobs`)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a notebook as a job")
    run.add_argument("notebook")
    run.add_argument("-p", "--parameter", type=_parameter, action="append", default=[], help="name=value")
    run.add_argument("--wait", action="store_true", help="wait for it to end, then print its log")
    sub.add_parser("list", help="your jobs in this project")
    for name in ("status", "log", "cancel", "crate"):
        sub.add_parser(name).add_argument("id", type=int)
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            job = submit(args.notebook, dict(args.parameter))
            print(f"job {job.id} {job.status}: executed notebook and log go to {job.info['folder']}/")
            if args.wait:
                print(job.wait().log())
                print(job)
                return 0 if job.status == "done" else 1
        elif args.command == "list":
            for job in list():
                print(job)
        elif args.command == "status":
            print(get(args.id))
        elif args.command == "log":
            print(get(args.id).log())
        elif args.command == "cancel":
            print(get(args.id).cancel())
        elif args.command == "crate":
            print(get(args.id).crate())
    except JobError as exc:
        print(f"tre-job: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Re-runs: the request's notebook executed again on the host, in a sealed container (hub.host.sealed),
on the project's current release, and its outputs compared with the submitted ones.

`start` checks the rules and records the re-run (audited, with the notebook's hash and the release);
`execute` then runs it, at most `TRE_RERUNS_AT_ONCE` at a time on this host, and records what each
output file came to (audited). The inputs are the request's own snapshots: its supporting notebook
and the code files beside it, byte for byte what the checkers see; nothing else of the workspace.
"""

from __future__ import annotations

import threading
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from egress.review import workflow as wf
from egress.review.base import EgressContext, refusals_audited
from egress.review.checks import StoredFile, run_checks
from egress.review.errors import BadInput, NotFound
from egress.review.facts import active_files, load_request, permitted
from egress.review.models import EgressFile, EgressRerun
from egress.review.reproduce import Outcome, compare
from hub.host import swarm
from hub.host.sealed import SealedRunError, run_notebook
from hub.kernel import audit
from hub.kernel.audit_actions import AuditAction as A
from hub.kernel.clock import utcnow
from hub.kernel.db import valid_row_id
from hub.registry.access import Limits, project_limits
from hub.registry.models import Project

SIDECAR = ".sdc.json"  # what tre_notebook.sdc writes beside an output
CODE_SUFFIXES = (".py",)  # supporting code files the notebook may import, placed beside it
_slots: dict[int, threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


def _host_slots(n: int) -> threading.BoundedSemaphore:
    with _slots_lock:
        return _slots.setdefault(n, threading.BoundedSemaphore(n))


class EgressReruns:
    def __init__(self, ctx: EgressContext) -> None:
        self.ctx = ctx

    @refusals_audited(A.EGRESS_REFUSED_RERUN, "egress_request")
    def start(self, who: str, rid: int) -> int:
        settings = self.ctx.settings
        with self.ctx.writing() as s:
            req = load_request(s, rid)
            permitted(s, who, wf.RequestAction.RERUN, req)
            notebooks = [
                f for f in active_files(req) if f.kind == wf.FileKind.SUPPORTING and f.name.endswith(".ipynb")
            ]
            if len(notebooks) != 1:
                raise BadInput(
                    "Add the one notebook that produces this request's outputs as a supporting file "
                    f"(it has {len(notebooks)}); code files it imports go beside it as supporting .py files."
                )
            current = settings.current_release(req.project_slug)
            if not current.is_symlink():
                raise BadInput(f"Project {req.project_slug} has no published release to re-run on.")
            release = int(current.resolve().name)
            row = EgressRerun(
                request_id=rid,
                requested_by=who,
                notebook_file_id=notebooks[0].id,
                notebook_sha256=notebooks[0].sha256,
                release=release,
                status=wf.RerunStatus.QUEUED.value,
                log="",
            )
            s.add(row)
            s.flush()
            audit.record(
                s,
                who,
                A.EGRESS_RERUN_START,
                "egress_request",
                str(rid),
                {
                    "rerun": row.id,
                    "notebook": notebooks[0].relpath,
                    "sha256": row.notebook_sha256,
                    "release": release,
                    "parameters": {},  # a re-run uses the notebook's own parameter values
                },
            )
            return row.id

    @refusals_audited(A.EGRESS_REFUSED_RERUN, "egress_rerun")
    def cancel(self, who: str, rerun_id: int) -> None:
        """Stop a re-run that is waiting or running (the author and the project's checkers)."""
        with self.ctx.writing() as s:
            row = s.get(EgressRerun, rerun_id) if valid_row_id(rerun_id) else None
            if row is None:
                raise NotFound(f"There is no re-run {rerun_id}.")
            permitted(s, who, wf.RequestAction.RERUN, load_request(s, row.request_id))
            if row.status != wf.RerunStatus.QUEUED or row.cancelled_by:
                raise BadInput(f"Re-run {rerun_id} is not running any more.")
            row.cancelled_by = who
            audit.record(
                s, who, A.EGRESS_RERUN_CANCEL, "egress_request", str(row.request_id), {"rerun": rerun_id}
            )

    def _cancelled(self, rerun_id: int) -> str:
        with self.ctx.reading() as s:
            who = s.execute(select(EgressRerun.cancelled_by).where(EgressRerun.id == rerun_id)).scalar()
        return f"cancelled by {who}" if who else ""

    def execute(self, rerun_id: int) -> str:
        """Run a started re-run to its end (blocking; call it off the request path). Returns its status."""
        settings = self.ctx.settings
        with self.ctx.reading() as s:
            row = s.get(EgressRerun, rerun_id)
            if row is None or row.status != wf.RerunStatus.QUEUED:
                raise BadInput(f"Re-run {rerun_id} is not waiting to run.")
            req = load_request(s, row.request_id)
            files = active_files(req)
            notebook = next(f for f in files if f.id == row.notebook_file_id)
            folder = PurePosixPath(notebook.relpath).parent
            code = [
                f
                for f in files
                if f.kind == wf.FileKind.SUPPORTING
                and f.name.endswith(CODE_SUFFIXES)
                and PurePosixPath(f.relpath).parent == folder
            ]
            outputs = [(f.id, f.relpath, f.sha256) for f in files if f.kind == wf.FileKind.OUTPUT]
            stored = [StoredFile.of(f) for f in files]
            wanted = [(f.relpath, f.sha256) for f in [notebook, *code]]
            notebook_path, project, release = notebook.relpath, req.project_slug, row.release
            found = s.execute(select(Project).where(Project.slug == project)).scalar_one_or_none()
            limits = project_limits(found) if found is not None else Limits()
        inputs = {relpath: self.ctx.store.read(sha) for relpath, sha in wanted}
        release_dir = settings.project_dir(project) / "releases" / str(release)
        with _host_slots(settings.reruns_at_once):
            try:
                if reason := self._cancelled(rerun_id):  # cancelled while it waited for a slot
                    raise SealedRunError(reason)
                if not release_dir.is_dir():
                    raise SealedRunError(f"release {release} of {project} no longer exists")
                result = run_notebook(
                    settings.image,
                    release_dir,
                    inputs,
                    notebook_path,
                    settings.egress_dir / "reruns" / str(rerun_id),
                    timeout=limits.rerun_seconds or settings.rerun_seconds,
                    mem=str(limits.mem).upper(),
                    cpus=limits.cpu,
                    pids=limits.pids,
                    labels={"org.tre.rerun": str(rerun_id), "org.tre.project": project},
                    collect={relpath + suffix for _, relpath, _ in outputs for suffix in ("", SIDECAR)},
                    cancelled=lambda: self._cancelled(rerun_id),
                    swarm_network=swarm.sealed_runs_on(settings),
                )
            except SealedRunError as exc:
                result = None
                problem = str(exc)
        if result is None:
            failed = wf.RerunStatus.STOPPED if problem.startswith("cancelled by") else wf.RerunStatus.FAILED
            status, results, log, exit_code, seconds = failed, {}, problem, None, None
        else:
            status = (
                wf.RerunStatus.STOPPED
                if result.exit_code is None
                else wf.RerunStatus.DONE
                if result.ok
                else wf.RerunStatus.FAILED
            )
            results = {
                str(fid): {
                    **compare(relpath, self.ctx.store.read(sha), result.files.get(relpath)).to_dict(),
                    "sha256": sha,  # what was compared: a later version of the file needs a new run
                }
                for fid, relpath, sha in outputs
            }
            log, exit_code, seconds = result.log, result.exit_code, result.seconds
        # The run's own tre_notebook.sdc metadata is the trusted one: re-check what it reproduced.
        trusted = {
            fid: result.files[relpath + SIDECAR]
            for fid, relpath, _ in outputs
            if result is not None
            and (relpath + SIDECAR) in result.files
            and Outcome(results[str(fid)]["outcome"]).reproduced
        }
        rechecked = run_checks(self.ctx, project, stored, trusted) if trusted else {}
        with self.ctx.writing() as s:
            row = s.get(EgressRerun, rerun_id)
            for fid in trusted:  # only while the file is still the version that was re-run
                f = s.get(EgressFile, fid)
                sha = next(sha for i, _, sha in outputs if i == fid)
                if f is not None and f.removed_at is None and f.sha256 == sha:
                    f.checks = {**rechecked[fid], "metadata": "re-run"}
                    results[str(fid)]["checks"] = rechecked[fid]["verdict"]
            row.status, row.results, row.log = status.value, results, log
            row.exit_code, row.seconds, row.finished_at = exit_code, seconds, utcnow()
            outcomes = [r["outcome"] for r in results.values()]
            audit.record(
                s,
                "tre-egress",
                A.EGRESS_RERUN_FINISH,
                "egress_request",
                str(row.request_id),
                {
                    "rerun": rerun_id,
                    "status": status.value,
                    "exit_code": exit_code,
                    "reproduced": sum(Outcome(o).reproduced for o in outcomes),
                    "not_reproduced": sum(not Outcome(o).reproduced for o in outcomes),
                    "rechecked_with_rerun_metadata": sorted(trusted),
                },
            )
        return status.value


def rerun_views(s: Session, rid: int) -> list[dict[str, Any]]:
    """The request's re-runs, newest first, for its page (the caller has checked VIEW)."""
    rows = s.execute(
        select(EgressRerun).where(EgressRerun.request_id == rid).order_by(EgressRerun.id.desc())
    ).scalars()
    names = {
        f.id: f.name for f in s.execute(select(EgressFile).where(EgressFile.request_id == rid)).scalars()
    }
    return [
        {
            "id": r.id,
            "requested_by": r.requested_by,
            "notebook": names.get(r.notebook_file_id, "?"),
            "release": r.release,
            "status": r.status,
            "exit_code": r.exit_code,
            "seconds": r.seconds,
            "log": r.log,
            "created_at": r.created_at.isoformat(),
            "results": [
                {"file": names.get(int(fid), fid), **res} for fid, res in sorted((r.results or {}).items())
            ],
        }
        for r in rows
    ]


def reproducing_rerun(s: Session, rid: int, released: dict[int, str]) -> dict[str, Any] | None:
    """The newest finished re-run of the request that compared any released file at its released
    version ({file id: sha256}), with only those results: the run a release's RO-Crate describes."""
    rows = s.execute(
        select(EgressRerun)
        .where(EgressRerun.request_id == rid, EgressRerun.status == wf.RerunStatus.DONE.value)
        .order_by(EgressRerun.id.desc())
    ).scalars()
    for run in rows:
        results = {
            fid: {"outcome": res["outcome"], "reproduced": Outcome(res["outcome"]).reproduced}
            for fid, res in (run.results or {}).items()
            if released.get(int(fid)) == res.get("sha256")
        }
        if results:
            notebook = s.get(EgressFile, run.notebook_file_id)
            return {
                "id": run.id,
                "notebook": notebook.name if notebook else "notebook",
                "notebook_sha256": run.notebook_sha256,
                "release": run.release,
                "status": run.status,
                "created_at": run.created_at.isoformat(),
                "finished_at": run.finished_at.isoformat() if run.finished_at else run.created_at.isoformat(),
                "results": results,
            }
    return None

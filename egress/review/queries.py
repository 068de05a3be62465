"""Egress queries: what a person may see of requests, files, workspaces and the audit log.

Pages and the API read through here only; nothing here changes a request. Views are cached until
anything changes (see `ViewCache`), and a refused read is audited like a refused command.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from egress.review import workflow as wf
from egress.review.base import EgressContext, refusals_audited
from egress.review.commands import submission_problems
from egress.review.errors import BadInput, Denied
from egress.review.facts import active_files, actor_in, is_admin, load_file, load_request, permitted
from egress.review.models import EgressComment, EgressFile, EgressRequest, EgressReview
from egress.review.reruns import rerun_views
from egress.review.storage import Entry, list_workspace, open_workspace_file
from hub.kernel import audit, codelog
from hub.kernel.audit import AuditEvent
from hub.kernel.audit_actions import AuditAction as A
from hub.kernel.clock import utcnow
from hub.registry.access import project_roles
from hub.registry.models import Membership, Project, User
from hub.registry.vocabulary import Role

T = TypeVar("T")
PREVIEW_BYTES = 64 * 1024
VIEW_CACHE_SECONDS = 60.0
VIEW_CACHE_SIZE = 4096
LIST_LIMIT = 200
AUDIT_LIMIT = 500


CODE_RUNS_SHOWN = 500  # the newest, on a request's page; `tre audit code` has them all


class ListScope(StrEnum):
    MINE = "mine"  # the author's own requests
    QUEUE = "queue"  # open requests in projects I check, oldest first
    HISTORY = "history"  # requests I reviewed
    PROJECT = "project"  # non-draft requests of projects I lead
    ALL = "all"  # every non-draft request (administrators, e.g. to revoke a release)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


class ViewCache:
    """Reads answered from memory while nothing has changed since they were computed.

    Every committed change, here or in the registry, appends to the audit chain, so the chain's
    newest event id is a version number of everything a view depends on; reading it is one
    primary-key lookup. A short TTL bounds what changes with the clock alone (project expiry).
    Callers must treat a returned value as read-only.
    """

    def __init__(self) -> None:
        self._views: OrderedDict[tuple, tuple[int, float, Any]] = OrderedDict()
        self._lock = threading.Lock()  # pages run in worker threads, the API on the event loop

    def get(self, s: Session, key: tuple, compute: Callable[[Session], T]) -> T:
        head = s.execute(select(func.max(AuditEvent.id))).scalar() or 0
        now = time.monotonic()
        with self._lock:
            hit = self._views.get(key)
            if hit is not None and hit[0] == head and now - hit[1] < VIEW_CACHE_SECONDS:
                self._views.move_to_end(key)
                return hit[2]
        value = compute(s)
        with self._lock:
            self._views[key] = (head, now, value)
            if len(self._views) > VIEW_CACHE_SIZE:
                self._views.popitem(last=False)
        return value


def summary(req: EgressRequest) -> dict[str, Any]:
    return {
        "id": req.id,
        "project": req.project_slug,
        "author": req.author,
        "title": req.title,
        "state": req.state,
        "created_at": _iso(req.created_at),
        "updated_at": _iso(req.updated_at),
        "submitted_at": _iso(req.submitted_at),
    }


class EgressQueries:
    def __init__(self, ctx: EgressContext) -> None:
        self.ctx = ctx
        self.cache = ViewCache()

    def _cached(self, key: tuple, compute: Callable[[Session], T]) -> T:
        with self.ctx.reading() as s:
            return self.cache.get(s, key, compute)

    # -- who and where -----------------------------------------------------------------------

    def _memberships(self, s: Session, who: str) -> dict[str, set[Role]]:
        slugs = s.execute(
            select(Project.slug)
            .join(Membership, Membership.project_id == Project.id)
            .join(User, User.id == Membership.user_id)
            .where(User.username == who)
            .distinct()
        ).scalars()
        return {slug: project_roles(s, who, slug) for slug in slugs}

    def whoami(self, who: str) -> dict[str, Any]:
        with self.ctx.reading() as s:
            return {
                "username": who,
                "is_admin": is_admin(s, who),
                "projects": {slug: sorted(r) for slug, r in self._memberships(s, who).items() if r},
            }

    @refusals_audited(A.EGRESS_REFUSED_LIST_ALL, "egress_request", "*")
    def _require_admin_to_list_all(self, who: str) -> None:
        with self.ctx.reading() as s:
            if not is_admin(s, who):
                raise Denied("Only administrators can list every request.")

    # -- requests ----------------------------------------------------------------------------

    def list_requests(
        self, who: str, scope: str = ListScope.MINE, limit: int = 50, offset: int = 0
    ) -> list[dict]:
        limit = max(1, min(limit, LIST_LIMIT))
        offset = max(0, offset)
        try:
            scope = ListScope(scope)
        except ValueError:
            raise BadInput(f"scope is one of {', '.join(ListScope)}.") from None
        if scope is ListScope.ALL:
            self._require_admin_to_list_all(who)
        return self._cached(
            ("list", who, scope, limit, offset), lambda s: self._list(s, who, scope, limit, offset)
        )

    def _list(self, s: Session, who: str, scope: ListScope, limit: int, offset: int) -> list[dict]:
        q = select(EgressRequest)
        if scope is ListScope.MINE:
            q = q.where(EgressRequest.author == who).order_by(EgressRequest.updated_at.desc())
        elif scope in (ListScope.QUEUE, ListScope.HISTORY, ListScope.PROJECT):
            role = Role.LEAD if scope is ListScope.PROJECT else Role.CHECKER
            projects = [p for p, r in self._memberships(s, who).items() if role in r]
            q = q.where(EgressRequest.project_slug.in_(projects), EgressRequest.author != who)
            if scope is ListScope.QUEUE:
                q = q.where(EgressRequest.state.in_([wf.State.SUBMITTED, wf.State.UNDER_REVIEW]))
                q = q.order_by(EgressRequest.submitted_at.asc(), EgressRequest.id)
            elif scope is ListScope.HISTORY:
                mine = select(EgressReview.request_id).where(EgressReview.checker == who)
                q = q.where(EgressRequest.id.in_(mine)).order_by(EgressRequest.updated_at.desc())
            else:
                q = q.where(EgressRequest.state != wf.State.DRAFT).order_by(EgressRequest.id.desc())
        else:
            q = q.where(EgressRequest.state != wf.State.DRAFT).order_by(EgressRequest.id.desc())
        return [summary(r) for r in s.execute(q.limit(limit).offset(offset)).scalars()]

    @staticmethod
    def _view_file(f: EgressFile, votes: list[wf.Vote], facts: wf.RequestFacts) -> dict[str, Any]:
        file_votes = wf.counted_votes(facts, f.id)
        return {
            "id": f.id,
            "name": f.name,
            "relpath": f.relpath,
            "kind": f.kind,
            "group_id": f.group_id,
            "sha256": f.sha256,
            "size": f.size,
            "version": f.version,
            "checks": f.checks,
            "added_at": _iso(f.added_at),
            "votes": [
                {"checker": v.checker, "decision": v.decision.value, "override": v.override}
                for v in votes
                if v.file_id == f.id
            ],
            "needs_override": f.id in facts.unreproduced,
            "status": None if wf.independent_phase(facts) else wf.file_status(facts.author, file_votes),
        }

    @refusals_audited(A.EGRESS_REFUSED_VIEW, "egress_request")
    def request_view(self, who: str, rid: int) -> dict[str, Any]:
        """Everything a viewer may see of a request, with the independent phase applied."""
        return self._cached(("view", who, rid), lambda s: self._view(s, who, rid))

    def _view(self, s: Session, who: str, rid: int) -> dict[str, Any]:
        req = load_request(s, rid)
        actor, facts = permitted(s, who, wf.RequestAction.VIEW, req)
        votes = wf.visible_votes(actor, facts)
        comments = s.execute(
            select(EgressComment).where(EgressComment.request_id == rid).order_by(EgressComment.id)
        ).scalars()
        shown_comments = [
            {
                "id": c.id,
                "author": c.author,
                "body": c.body,
                "visibility": c.visibility,
                "file_id": c.file_id,
                "created_at": _iso(c.created_at),
            }
            for c in comments
            if wf.comment_visible(actor, facts, c.author, wf.Visibility(c.visibility))
        ]
        rel = req.release
        return {
            **summary(req),
            "decided_at": _iso(req.decided_at),
            "groups": [
                {"id": g.id, "name": g.name, "context": g.context, "controls": g.controls} for g in req.groups
            ],
            "files": [self._view_file(f, votes, facts) for f in active_files(req)],
            "comments": shown_comments,
            "independent_phase": wf.independent_phase(facts),
            "problems": submission_problems(req) if req.state in wf.EDITABLE else [],
            "release": None
            if rel is None
            else {
                "bundle_sha256": rel.bundle_sha256,
                "released_at": _iso(rel.released_at),
                "released_by": rel.released_by,
                "kid": rel.kid,
                "revoked_at": _iso(rel.revoked_at),
                "downloads": len(rel.downloads),
            },
            "can": sorted(a.value for a in wf.RequestAction if wf.may(a, actor, facts)),
            "roles": sorted(actor.roles),
            "code_log": self._author_code(s, req),
            "reruns": rerun_views(s, rid),
        }

    def _author_code(self, s: Session, req: EgressRequest) -> dict[str, Any]:
        """The code the author ran in the project (the guard's code log) for this request's period:
        from their previous submission in the project (or the project's start) to this submission
        (to now, for a draft)."""
        until = req.submitted_at or utcnow()
        previous = s.execute(
            select(func.max(EgressRequest.submitted_at)).where(
                EgressRequest.author == req.author,
                EgressRequest.project_slug == req.project_slug,
                EgressRequest.id != req.id,
                EgressRequest.submitted_at < until,
            )
        ).scalar()
        since = (
            previous or s.execute(select(Project.created_at).where(Project.slug == req.project_slug)).scalar()
        )
        runs = codelog.search(
            s, username=req.author, project=req.project_slug, since=since, until=until, limit=CODE_RUNS_SHOWN
        )
        total = s.execute(
            select(func.count(codelog.CodeRun.id)).where(
                codelog.CodeRun.username == req.author,
                codelog.CodeRun.project == req.project_slug,
                codelog.CodeRun.time >= since,
                codelog.CodeRun.time <= until,
            )
        ).scalar_one()
        return {
            "since": _iso(since),
            "until": _iso(until),
            "total": total,
            "runs": [
                {"time": _iso(r.time), "kernel": r.kernel_id[:8], "kind": r.kind, "code": r.code}
                for r in runs
            ],
        }

    @refusals_audited(A.EGRESS_REFUSED_VIEW, "egress_file")
    def file_content(
        self, who: str, file_id: int, limit: int | None = None, *, raw: bool = False
    ) -> tuple[dict[str, Any], bytes]:
        """The file and its bytes; ``raw`` (bytes handed to a browser as they are) is audited."""
        with self.ctx.writing() if raw else self.ctx.reading() as s:
            f = load_file(s, file_id)
            permitted(s, who, wf.RequestAction.VIEW, f.request)
            meta = {
                "id": f.id,
                "name": f.name,
                "sha256": f.sha256,
                "size": f.size,
                "request_id": f.request_id,
                "checks": f.checks,
            }
            if raw:
                audit.record(
                    s, who, A.EGRESS_FILE_READ, "egress_request", str(f.request_id),
                    {"file": f.id, "sha256": f.sha256},
                )  # fmt: skip
        return meta, self.ctx.store.read(meta["sha256"], limit)

    # -- the author's workspace (file picker) ------------------------------------------------

    def _require_author(self, who: str, project: str) -> None:
        with self.ctx.reading() as s:
            if not wf.can_create(actor_in(s, who, project)):
                raise Denied(f"You are not a researcher on project {project}.")

    @refusals_audited(A.EGRESS_REFUSED_WORKSPACE, "project")
    def workspace(self, who: str, project: str, reldir: str = "") -> list[Entry]:
        self._require_author(who, project)
        return list_workspace(self.ctx.settings.home_dir(project, who), reldir)

    @refusals_audited(A.EGRESS_REFUSED_PREVIEW, "project")
    def workspace_preview(self, who: str, project: str, relpath: str) -> bytes:
        self._require_author(who, project)
        home = self.ctx.settings.home_dir(project, who)
        with open_workspace_file(home, relpath, self.ctx.settings.egress_max_file_bytes) as wsf:
            data = os.pread(wsf.fd, PREVIEW_BYTES, 0)
            clean = wsf.relpath
        with self.ctx.writing() as s:
            audit.record(
                s, who, A.EGRESS_WORKSPACE_PREVIEW, "project", project, {"path": clean, "bytes": len(data)}
            )
        return data

    # -- the audit log -----------------------------------------------------------------------

    @refusals_audited(A.EGRESS_REFUSED_AUDIT_LOG, "audit", "-")
    def audit_log(
        self,
        who: str,
        actor: str = "",
        action: str = "",
        object_id: str = "",
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        with self.ctx.reading() as s:
            if not is_admin(s, who):
                raise Denied("Only administrators can read the audit log.")
            return audit.read_events(s, actor, action, object_id, min(limit, AUDIT_LIMIT), offset)

"""Egress operations: check the rules, do the I/O, write the audit event, all in one transaction.

Slow I/O (copying a workspace file, running the disclosure checks, writing a bundle) happens between
a read phase and a short write transaction that re-checks everything it relied on, so a 100 MB copy
never holds the database write lock. A refused operation rolls back and is then audited in a
transaction of its own, so every refusal leaves a trace.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.orm import Session, joinedload, selectinload, sessionmaker

from egress import workflow as wf
from egress.bundle import BundleFile, build_bundle, file_sha256, safe_member_name, verify_bundle
from egress.models import (
    EgressComment,
    EgressDownload,
    EgressFile,
    EgressGroup,
    EgressRelease,
    EgressRequest,
    EgressReview,
)
from egress.signing import InvalidRecord, Signer, load_keyset
from egress.storage import BlobStore, Entry, Refused, list_workspace, open_workspace_file
from hub import audit
from hub.access import project_roles
from hub.db import session_scope, utcnow
from hub.models import AuditEvent, Membership, Project, User
from hub.settings import Settings, get_settings

P = ParamSpec("P")
T = TypeVar("T")
PREVIEW_BYTES = 64 * 1024
VIEW_CACHE_SECONDS = 60.0
VIEW_CACHE_SIZE = 4096
LIST_LIMIT = 200


class EgressError(Exception):
    status = 400


class BadInput(EgressError):
    status = 422


class Denied(EgressError):
    status = 403


class NotFound(EgressError):
    status = 404


class Conflict(EgressError):
    status = 409


def _valid_id(value: int) -> bool:
    """Row ids are positive 63-bit integers; anything else cannot name a row (or reach SQLite)."""
    return 0 < value < 2**63


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def _read_engine(settings: Settings) -> Engine | None:
    """A pooled engine with plain (deferred) transactions for pages and lists on SQLite.

    hub.db begins every SQLite transaction IMMEDIATE so audit appends never interleave; reads do not
    need the write lock, and WAL gives them a consistent snapshot without it.
    """
    url = settings.db_url
    if not url.startswith("sqlite") or url.endswith(":memory:"):
        return None
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=8)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA foreign_keys=ON")
        dbapi_conn.execute("PRAGMA query_only=ON")  # this engine must never write

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


# (paths, project, ids of the request's own files) -> DESIGN.md's report document
Checker = Callable[[list[str], str, frozenset[int]], dict[str, Any]]


def sdc_checker(paths: list[str], project: str, own_files: frozenset[int] = frozenset()) -> dict[str, Any]:
    """The SDC engine's report for the given files, with the project's context: its rule settings,
    its earlier pending and released outputs (for differencing) and its pseudonyms.

    The context comes from the same helper `tre egress check --project` uses; the request's own
    earlier versions are left out of "earlier" so a resubmitted file is not compared with itself."""
    import dataclasses

    from egress.project_context import project_context
    from egress.sdc import RuleConfig, check_paths

    with tempfile.TemporaryDirectory(prefix="egress-context-") as scratch:
        overrides, context = project_context(project, Path(scratch))
        if context is not None:
            own = {str(i) for i in own_files}
            earlier = [
                e for e in context.earlier if not (isinstance(e, Path | str) and Path(e).parent.name in own)
            ]
            context = dataclasses.replace(context, earlier=earlier)
        config = RuleConfig.from_dict(overrides) if overrides else None
        return check_paths(paths, config=config, context=context)


class Egress:
    """The egress operations for one deployment (settings, blob store, signing key)."""

    def __init__(self, settings: Settings | None = None, checker: Checker | None = None):
        self.settings = settings or get_settings()
        self.checker = checker or sdc_checker
        self.store = BlobStore(self.settings.egress_dir)
        self.signer = Signer(self.settings.keys_dir)
        self._reader = _read_engine(self.settings)
        self._reader_factory = sessionmaker(bind=self._reader) if self._reader else None
        self._views: OrderedDict[tuple, tuple[int, float, Any]] = OrderedDict()
        self._views_lock = threading.Lock()

    def recover(self) -> None:
        """Remove what a crash can leave half-written (blob and bundle temporaries); call on start."""
        self.store.clean_temporary()
        releases = self.settings.egress_dir / "releases"
        if releases.is_dir():
            for tmp in releases.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)

    def _cached(self, key: tuple, compute: Callable[[Session], T]) -> T:
        """A read, answered from memory while nothing has changed since it was computed.

        Every committed change, here or in the registry, appends to the audit chain, so the chain's
        newest event id is a version number of everything a view depends on; reading it is one
        primary-key lookup. A short TTL bounds what changes with the clock alone (project expiry).
        Callers must treat the returned value as read-only."""
        with self.reading() as s:
            head = s.execute(select(func.max(AuditEvent.id))).scalar() or 0
            now = time.monotonic()
            with self._views_lock:  # pages run in worker threads, the API on the event loop
                hit = self._views.get(key)
                if hit is not None and hit[0] == head and now - hit[1] < VIEW_CACHE_SECONDS:
                    self._views.move_to_end(key)
                    return hit[2]
            value = compute(s)
        with self._views_lock:
            self._views[key] = (head, now, value)
            if len(self._views) > VIEW_CACHE_SIZE:
                self._views.popitem(last=False)
        return value

    # -- sessions and refusals ---------------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[Session]:
        if self._reader_factory is None:
            with session_scope(self.settings) as s:
                yield s
            return
        session = self._reader_factory()
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    def writing(self) -> Any:
        return session_scope(self.settings)

    def audited(self, who: str, action: str, object_type: str, object_id: object, fn: Callable[[], T]) -> T:
        """Run an operation; if it is refused, record the refusal in its own transaction."""
        try:
            return fn()
        except (Denied, Conflict, BadInput, Refused, InvalidRecord) as exc:
            self.refusal(who, action, object_type, object_id, str(exc))
            raise

    def refusal(self, who: str, action: str, object_type: str, object_id: object, reason: str) -> None:
        with self.writing() as s:
            audit.record(s, who, f"egress.refused.{action}", object_type, str(object_id), {"reason": reason})

    # -- facts -------------------------------------------------------------------------------

    def _actor(self, s: Session, who: str, project: str) -> wf.Actor:
        user = s.execute(select(User).where(User.username == who)).scalar_one_or_none()
        is_admin = bool(user and user.is_admin and not user.disabled)
        return wf.Actor(who, frozenset(project_roles(s, who, project)), is_admin)

    def _request(self, s: Session, rid: int) -> EgressRequest:
        # One round trip for the request and everything the rules look at.
        options = [
            selectinload(EgressRequest.files),
            selectinload(EgressRequest.groups),
            joinedload(EgressRequest.release).selectinload(EgressRelease.downloads),
        ]
        req = s.get(EgressRequest, rid, options=options) if _valid_id(rid) else None
        if req is None:
            raise NotFound(f"There is no egress request {rid}.")
        return req

    def _file(self, s: Session, file_id: int) -> EgressFile:
        f = s.get(EgressFile, file_id) if _valid_id(file_id) else None
        if f is None or f.removed_at is not None:
            raise NotFound(f"There is no file {file_id} in any request.")
        return f

    @staticmethod
    def _active_files(req: EgressRequest) -> list[EgressFile]:
        return [f for f in req.files if f.removed_at is None]

    def _votes(self, s: Session, req: EgressRequest) -> list[EgressReview]:
        """The latest review of each checker on each current file version."""
        versions = {f.id: f.version for f in self._active_files(req)}
        latest: dict[tuple[int, str], EgressReview] = {}
        rows = s.execute(
            select(EgressReview).where(EgressReview.request_id == req.id).order_by(EgressReview.id)
        )
        for r in rows.scalars():
            if versions.get(r.file_id) == r.file_version:
                latest[(r.file_id, r.checker)] = r
        return list(latest.values())

    def _facts(self, s: Session, req: EgressRequest) -> wf.RequestFacts:
        files = self._active_files(req)
        votes = tuple(wf.Vote(r.checker, r.file_id, wf.Decision(r.decision)) for r in self._votes(s, req))
        downloaded = bool(req.release and req.release.downloads)
        outputs = frozenset(f.id for f in files if f.kind == wf.FileKind.OUTPUT)
        return wf.RequestFacts(wf.State(req.state), req.author, outputs, votes, downloaded)

    def _check(self, s: Session, who: str, action: wf.Action, req: EgressRequest) -> wf.Actor:
        return self._checked(s, who, action, req)[0]

    def _checked(
        self, s: Session, who: str, action: wf.Action, req: EgressRequest
    ) -> tuple[wf.Actor, wf.RequestFacts]:
        actor = self._actor(s, who, req.project_slug)
        facts = self._facts(s, req)
        try:
            wf.check(action, actor, facts)
        except wf.Forbidden as exc:
            raise Denied(str(exc)) from None
        return actor, facts

    def _move(self, s: Session, who: str, req: EgressRequest, action: wf.Action, details: dict | None = None):
        new = wf.next_state(wf.State(req.state), action)
        old, req.state = req.state, new.value
        req.updated_at = utcnow()
        audit.record(
            s,
            who,
            f"egress.request.{action.value}",
            "egress_request",
            str(req.id),
            {"from": old, "to": new.value, "project": req.project_slug, **(details or {})},
        )

    # -- requests and groups -----------------------------------------------------------------

    def create_request(self, who: str, project: str, title: str) -> int:
        def op() -> int:
            title_ = title.strip()
            if not title_ or len(title_) > 200:
                raise BadInput("Give the request a title of 1 to 200 characters.")
            with self.writing() as s:
                if s.execute(select(Project.id).where(Project.slug == project)).scalar() is None:
                    raise NotFound(f"There is no project called {project!r}.")
                if not wf.can_create(self._actor(s, who, project)):
                    raise Denied(f"You are not a researcher on project {project}; ask its lead to add you.")
                req = EgressRequest(project_slug=project, author=who, title=title_)
                s.add(req)
                s.flush()
                audit.record(
                    s,
                    who,
                    "egress.request.create",
                    "egress_request",
                    str(req.id),
                    {"project": project, "title": title_},
                )
                return req.id

        return self.audited(who, "create", "project", project, op)

    def add_group(self, who: str, rid: int, name: str, context: str = "", controls: str = "") -> int:
        def op() -> int:
            name_ = name.strip()
            if not name_ or len(name_) > 100:
                raise BadInput("Give the group a name of 1 to 100 characters.")
            with self.writing() as s:
                req = self._request(s, rid)
                self._check(s, who, wf.Action.EDIT, req)
                if any(g.name == name_ for g in req.groups):
                    raise Conflict(f"This request already has a group called {name_!r}.")
                g = EgressGroup(request=req, name=name_, context=context.strip(), controls=controls.strip())
                s.add(g)
                s.flush()
                audit.record(s, who, "egress.group.add", "egress_request", str(rid), {"group": name_})
                return g.id

        return self.audited(who, "edit", "egress_request", rid, op)

    def update_group(self, who: str, group_id: int, context: str, controls: str) -> None:
        def op() -> None:
            with self.writing() as s:
                g = s.get(EgressGroup, group_id) if _valid_id(group_id) else None
                if g is None:
                    raise NotFound(f"There is no group {group_id}.")
                self._check(s, who, wf.Action.EDIT, g.request)
                g.context, g.controls = context.strip(), controls.strip()
                g.request.updated_at = utcnow()
                audit.record(
                    s, who, "egress.group.update", "egress_request", str(g.request_id), {"group": g.name}
                )

        self.audited(who, "edit", "egress_group", group_id, op)

    # -- files -------------------------------------------------------------------------------

    def _copy_in(self, who: str, project: str, relpath: str) -> tuple[str, str, int]:
        home = self.settings.home_dir(project, who)
        limit = self.settings.egress_max_file_bytes
        with open_workspace_file(home, relpath, limit) as wsf:
            sha, size = self.store.put_fd(wsf.fd, limit)
            return wsf.relpath, sha, size

    def add_file(self, who: str, rid: int, group_id: int, relpath: str, kind: str) -> int:
        def op() -> int:
            try:
                kind_ = wf.FileKind(kind)
            except ValueError:
                raise BadInput("A file is either 'output' (to be released) or 'supporting'.") from None
            with self.reading() as s:  # read phase: may this person add here at all?
                req = self._request(s, rid)
                self._check(s, who, wf.Action.EDIT, req)
                project = req.project_slug
            clean, sha, size = self._copy_in(who, project, relpath)
            with self.writing() as s:  # write phase: re-check, then record
                req = self._request(s, rid)
                self._check(s, who, wf.Action.EDIT, req)
                group = s.get(EgressGroup, group_id) if _valid_id(group_id) else None
                if group is None or group.request_id != rid:
                    raise NotFound(f"Request {rid} has no group {group_id}.")
                if any(f.relpath == clean for f in self._active_files(req)):
                    raise Conflict(f"'{clean}' is already in this request; use 'update file' to refresh it.")
                f = EgressFile(
                    request=req,
                    group=group,
                    relpath=clean,
                    name=os.path.basename(clean),
                    kind=kind_.value,
                    sha256=sha,
                    size=size,
                )
                s.add(f)
                req.updated_at = utcnow()
                s.flush()
                audit.record(
                    s,
                    who,
                    "egress.file.add",
                    "egress_request",
                    str(rid),
                    {"file": f.id, "path": clean, "sha256": sha, "size": size, "kind": kind_.value},
                )
                return f.id

        return self.audited(who, "add_file", "egress_request", rid, op)

    def update_file(self, who: str, file_id: int) -> int:
        """Take the file's current bytes from the workspace; a changed file starts its reviews afresh."""

        def op() -> int:
            with self.reading() as s:
                f = self._file(s, file_id)
                self._check(s, who, wf.Action.EDIT, f.request)
                project, relpath, rid = f.request.project_slug, f.relpath, f.request_id
            _, sha, size = self._copy_in(who, project, relpath)
            with self.writing() as s:
                f = self._file(s, file_id)
                self._check(s, who, wf.Action.EDIT, f.request)
                if sha != f.sha256:
                    old = f.sha256
                    f.sha256, f.size, f.version, f.checks = sha, size, f.version + 1, None
                    f.request.updated_at = utcnow()
                    audit.record(
                        s,
                        who,
                        "egress.file.update",
                        "egress_request",
                        str(rid),
                        {
                            "file": f.id,
                            "path": relpath,
                            "old_sha256": old,
                            "sha256": sha,
                            "version": f.version,
                        },
                    )
                return f.version

        return self.audited(who, "update_file", "egress_file", file_id, op)

    def remove_file(self, who: str, file_id: int) -> None:
        def op() -> None:
            with self.writing() as s:
                f = self._file(s, file_id)
                self._check(s, who, wf.Action.EDIT, f.request)
                f.removed_at = utcnow()
                audit.record(
                    s,
                    who,
                    "egress.file.remove",
                    "egress_request",
                    str(f.request_id),
                    {"file": f.id, "path": f.relpath},
                )

        self.audited(who, "remove_file", "egress_file", file_id, op)

    # -- automated checks and submission -----------------------------------------------------

    def _run_checks(self, project: str, files: list[tuple[int, str, str]]) -> dict[int, dict[str, Any]]:
        """Run the SDC engine on stored blobs [(file id, name, sha256)]; {file id: file report}.

        The engine reads the type from the file name, so each blob is linked under its name first."""
        with tempfile.TemporaryDirectory(prefix="egress-check-") as tmp:
            paths = []
            for fid, name, sha in files:
                p = Path(tmp) / str(fid) / name
                p.parent.mkdir()
                try:
                    os.link(self.store.path(sha), p)
                except OSError:  # another filesystem: copy instead
                    p.write_bytes(self.store.read(sha))
                paths.append(str(p))
            report = self.checker(paths, project, frozenset(fid for fid, _, _ in files))
        by_path = {r["path"]: r for r in report.get("files", [])}
        out = {}
        for (fid, _, _), p in zip(files, paths, strict=True):
            r = by_path.get(p) or {"verdict": "review", "findings": []}
            out[fid] = {"verdict": r.get("verdict", "review"), "findings": r.get("findings", [])}
        return out

    def precheck(self, who: str, rid: int) -> dict[int, dict[str, Any]]:
        def op() -> dict[int, dict[str, Any]]:
            with self.reading() as s:
                req = self._request(s, rid)
                self._check(s, who, wf.Action.PRECHECK, req)
                files = [(f.id, f.name, f.sha256) for f in self._active_files(req)]
                project = req.project_slug
            return self._run_checks(project, files)

        return self.audited(who, "precheck", "egress_request", rid, op)

    def submission_problems(self, s: Session, req: EgressRequest) -> list[str]:
        files = self._active_files(req)
        groups = [
            wf.GroupFacts(
                g.name,
                g.context,
                g.controls,
                tuple((f.name, wf.FileKind(f.kind)) for f in files if f.group_id == g.id),
            )
            for g in req.groups
        ]
        return wf.submission_problems(groups)

    def submit(self, who: str, rid: int) -> None:
        def op() -> None:
            with self.reading() as s:
                req = self._request(s, rid)
                self._check(s, who, wf.Action.SUBMIT, req)
                problems = self.submission_problems(s, req)
                if problems:
                    raise BadInput(" ".join(problems))
                snapshot = {f.id: (f.sha256, f.version) for f in self._active_files(req)}
                files = [(f.id, f.name, f.sha256) for f in self._active_files(req)]
                project = req.project_slug
            checks = self._run_checks(project, files)
            with self.writing() as s:
                req = self._request(s, rid)
                self._check(s, who, wf.Action.SUBMIT, req)
                current = {f.id: (f.sha256, f.version) for f in self._active_files(req)}
                if current != snapshot:
                    raise Conflict("The request changed while its checks ran; submit it again.")
                for f in self._active_files(req):
                    f.checks = checks[f.id]
                req.submitted_at = utcnow()
                verdicts = {str(fid): c["verdict"] for fid, c in checks.items()}
                self._move(s, who, req, wf.Action.SUBMIT, {"verdicts": verdicts})

        self.audited(who, "submit", "egress_request", rid, op)

    def withdraw(self, who: str, rid: int) -> None:
        def op() -> None:
            with self.writing() as s:
                req = self._request(s, rid)
                self._check(s, who, wf.Action.WITHDRAW, req)
                req.decided_at = utcnow()
                self._move(s, who, req, wf.Action.WITHDRAW)

        self.audited(who, "withdraw", "egress_request", rid, op)

    # -- reviews -----------------------------------------------------------------------------

    def vote(
        self, who: str, file_id: int, decision: str, comment: str = "", visibility: str = "checkers"
    ) -> str:
        """Record a checker's vote; returns the request's state afterwards (approved ones get released)."""

        def op() -> tuple[str, int]:
            try:
                decision_ = wf.Decision(decision)
                visibility_ = wf.Visibility(visibility)
            except ValueError:
                raise BadInput(
                    "Vote approve, changes or reject; comments are for checkers or author."
                ) from None
            with self.writing() as s:
                f = self._file(s, file_id)
                req = f.request
                actor = self._check(s, who, wf.Action.VOTE, req)
                s.add(
                    EgressReview(
                        request_id=req.id,
                        file_id=f.id,
                        file_version=f.version,
                        checker=who,
                        decision=decision_.value,
                    )
                )
                if comment.strip():
                    s.add(
                        EgressComment(
                            request_id=req.id,
                            file_id=f.id,
                            author=who,
                            body=comment.strip(),
                            visibility=visibility_.value,
                        )
                    )
                s.flush()
                audit.record(
                    s,
                    who,
                    "egress.review.vote",
                    "egress_request",
                    str(req.id),
                    {"file": f.id, "version": f.version, "sha256": f.sha256, "decision": decision_.value},
                )
                if req.state == wf.State.SUBMITTED:
                    self._move(s, who, req, wf.Action.VOTE)
                facts = self._facts(s, req)
                if wf.may(wf.Action.APPROVE, actor, facts):
                    req.decided_at = utcnow()
                    self._move(s, who, req, wf.Action.APPROVE)
                return req.state, req.id

        state, rid = self.audited(who, "vote", "egress_file", file_id, op)
        if state == wf.State.APPROVED:
            try:
                self.release(who, rid)
            except (EgressError, InvalidRecord):  # already audited; stays approved, release can be retried
                return state
            state = wf.State.RELEASED.value
        return state

    def _decide(self, who: str, rid: int, action: wf.Action, comment: str) -> None:
        def op() -> None:
            with self.writing() as s:
                req = self._request(s, rid)
                self._check(s, who, action, req)
                if comment.strip():
                    s.add(
                        EgressComment(
                            request_id=rid,
                            author=who,
                            body=comment.strip(),
                            visibility=wf.Visibility.AUTHOR.value,
                        )
                    )
                if action is wf.Action.REJECT:
                    req.decided_at = utcnow()
                self._move(s, who, req, action)

        self.audited(who, action.value, "egress_request", rid, op)

    def return_request(self, who: str, rid: int, comment: str = "") -> None:
        self._decide(who, rid, wf.Action.RETURN, comment)

    def reject_request(self, who: str, rid: int, comment: str = "") -> None:
        self._decide(who, rid, wf.Action.REJECT, comment)

    def comment(
        self, who: str, rid: int, body: str, visibility: str = "author", file_id: int | None = None
    ) -> int:
        def op() -> int:
            body_ = body.strip()
            if not body_ or len(body_) > 10_000:
                raise BadInput("Write a comment of 1 to 10,000 characters.")
            try:
                vis = wf.Visibility(visibility)
            except ValueError:
                raise BadInput("Comments are visible to 'checkers' or to the 'author' too.") from None
            with self.writing() as s:
                req = self._request(s, rid)
                self._check(s, who, wf.Action.COMMENT, req)
                if file_id is not None and self._file(s, file_id).request_id != rid:
                    raise NotFound(f"Request {rid} has no file {file_id}.")
                if who == req.author:
                    vis = wf.Visibility.AUTHOR
                c = EgressComment(
                    request_id=rid, file_id=file_id, author=who, body=body_, visibility=vis.value
                )
                s.add(c)
                s.flush()
                audit.record(
                    s,
                    who,
                    "egress.comment.add",
                    "egress_request",
                    str(rid),
                    {"comment": c.id, "visibility": vis.value},
                )
                return c.id

        return self.audited(who, "comment", "egress_request", rid, op)

    # -- release, download, revoke -----------------------------------------------------------

    def _record_claims(self, s: Session, req: EgressRequest) -> tuple[dict[str, Any], list[BundleFile]]:
        reviews = s.execute(
            select(EgressReview).where(EgressReview.request_id == req.id).order_by(EgressReview.id)
        ).scalars()
        history: dict[int, list[dict[str, Any]]] = {}
        for r in reviews:
            history.setdefault(r.file_id, []).append(
                {
                    "checker": r.checker,
                    "decision": r.decision,
                    "version": r.file_version,
                    "at": _iso(r.created_at),
                }
            )
        groups = {g.id: g for g in req.groups}
        files, bundle_files, used = [], [], set()
        for f in self._active_files(req):
            entry: dict[str, Any] = {
                "id": f.id,
                "name": f.name,
                "group": groups[f.group_id].name,
                "kind": f.kind,
                "sha256": f.sha256,
                "size": f.size,
                "version": f.version,
                "checks": f.checks,
                "reviews": [h for h in history.get(f.id, []) if h["version"] == f.version],
            }
            if f.kind == wf.FileKind.OUTPUT:
                path = "files/" + safe_member_name(groups[f.group_id].name, f.name)
                while path in used:
                    path = path.replace("files/", f"files/{f.id}-", 1)
                used.add(path)
                entry["path"] = path
                bundle_files.append(BundleFile(path, f.sha256))
            files.append(entry)
        votes = self._votes(s, req)
        claims = {
            "request": {"id": req.id, "title": req.title},
            "project": req.project_slug,
            "author": req.author,
            "submitted_at": _iso(req.submitted_at),
            "approved_at": _iso(req.decided_at),
            "reviewers": sorted({v.checker for v in votes}),
            "groups": [{"name": g.name, "context": g.context, "controls": g.controls} for g in req.groups],
            "files": [f for f in files if "path" in f],
            "supporting": [f for f in files if "path" not in f],
        }
        return claims, bundle_files

    def release(self, who: str, rid: int) -> None:
        def op() -> None:
            with self.reading() as s:
                req = self._request(s, rid)
                self._check(s, who, wf.Action.RELEASE, req)
                claims, bundle_files = self._record_claims(s, req)
            for bf in bundle_files:
                if not self.store.verify(bf.sha256):
                    raise InvalidRecord(
                        f"The stored copy of {bf.path} no longer matches its hash; not releasing."
                    )
            claims["released_by"] = who
            claims["released_at"] = _iso(utcnow())
            token = self.signer.sign(claims)
            name = f"request-{rid}-{utcnow().strftime('%Y%m%dT%H%M%S')}.zip"
            bundle_sha = build_bundle(
                self.settings.egress_dir / "releases" / name, token, bundle_files, self.store
            )
            with self.writing() as s:
                req = self._request(s, rid)
                self._check(s, who, wf.Action.RELEASE, req)
                kid = self.signer.ensure_key()
                s.add(
                    EgressRelease(
                        request_id=rid,
                        bundle_name=name,
                        bundle_sha256=bundle_sha,
                        record=token,
                        kid=kid,
                        released_by=who,
                    )
                )
                self._move(s, who, req, wf.Action.RELEASE, {"bundle": name, "sha256": bundle_sha, "kid": kid})

        self.audited(who, "release", "egress_request", rid, op)

    def download(self, who: str, rid: int) -> tuple[Path, str]:
        """Check, re-verify and audit a download; returns (bundle path, download file name)."""

        def op() -> tuple[Path, str]:
            with self.writing() as s:
                req = self._request(s, rid)
                self._check(s, who, wf.Action.DOWNLOAD, req)
                rel = req.release
                assert rel is not None  # released state implies a release row
                path = self.settings.egress_dir / "releases" / rel.bundle_name
                if not path.is_file() or file_sha256(path) != rel.bundle_sha256:
                    raise InvalidRecord("The release bundle on disk does not match its recorded hash.")
                verify_bundle(path, load_keyset(self.signer.keyset_path))
                s.add(EgressDownload(release_id=rel.id, username=who))
                audit.record(
                    s,
                    who,
                    "egress.release.download",
                    "egress_request",
                    str(rid),
                    {"bundle": rel.bundle_name, "sha256": rel.bundle_sha256},
                )
                return path, f"{req.project_slug}-request-{rid}.zip"

        return self.audited(who, "download", "egress_request", rid, op)

    def revoke(self, who: str, rid: int, reason: str = "") -> None:
        def op() -> None:
            with self.writing() as s:
                req = self._request(s, rid)
                self._check(s, who, wf.Action.REVOKE, req)
                assert req.release is not None
                req.release.revoked_by, req.release.revoked_at = who, utcnow()
                self._move(s, who, req, wf.Action.REVOKE, {"reason": reason.strip()})

        self.audited(who, "revoke", "egress_request", rid, op)

    # -- views -------------------------------------------------------------------------------

    def _memberships(self, s: Session, who: str) -> dict[str, set[str]]:
        slugs = s.execute(
            select(Project.slug)
            .join(Membership, Membership.project_id == Project.id)
            .join(User, User.id == Membership.user_id)
            .where(User.username == who)
            .distinct()
        ).scalars()
        return {slug: project_roles(s, who, slug) for slug in slugs}

    def _require_admin(self, who: str, message: str = "Only administrators can do this.") -> None:
        with self.reading() as s:
            user = s.execute(select(User).where(User.username == who)).scalar_one_or_none()
            if not (user and user.is_admin and not user.disabled):
                raise Denied(message)

    def whoami(self, who: str) -> dict[str, Any]:
        with self.reading() as s:
            user = s.execute(select(User).where(User.username == who)).scalar_one_or_none()
            return {
                "username": who,
                "is_admin": bool(user and user.is_admin and not user.disabled),
                "projects": {slug: sorted(r) for slug, r in self._memberships(s, who).items() if r},
            }

    @staticmethod
    def _summary(req: EgressRequest) -> dict[str, Any]:
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

    def list_requests(self, who: str, scope: str = "mine", limit: int = 50, offset: int = 0) -> list[dict]:
        """mine: the author's; queue: open requests in projects I check (oldest first);
        history: requests I reviewed; project: all non-draft requests of projects I lead;
        all: every non-draft request (administrators, e.g. to revoke a release)."""
        limit = max(1, min(limit, LIST_LIMIT))
        offset = max(0, offset)
        if scope not in ("mine", "queue", "history", "project", "all"):
            raise BadInput("scope is one of mine, queue, history, project, all.")
        if scope == "all":
            self.audited(who, "list_all", "egress_request", "*", lambda: self._require_admin(who))
        return self._cached(
            ("list", who, scope, limit, offset), lambda s: self._list(s, who, scope, limit, offset)
        )

    def _list(self, s: Session, who: str, scope: str, limit: int, offset: int) -> list[dict]:
        q = select(EgressRequest)
        if scope == "mine":
            q = q.where(EgressRequest.author == who).order_by(EgressRequest.updated_at.desc())
        elif scope in ("queue", "history", "project"):
            role = "lead" if scope == "project" else "checker"
            projects = [p for p, r in self._memberships(s, who).items() if role in r]
            q = q.where(EgressRequest.project_slug.in_(projects), EgressRequest.author != who)
            if scope == "queue":
                q = q.where(EgressRequest.state.in_([wf.State.SUBMITTED.value, wf.State.UNDER_REVIEW.value]))
                q = q.order_by(EgressRequest.submitted_at.asc(), EgressRequest.id)
            elif scope == "history":
                mine = select(EgressReview.request_id).where(EgressReview.checker == who)
                q = q.where(EgressRequest.id.in_(mine)).order_by(EgressRequest.updated_at.desc())
            else:
                q = q.where(EgressRequest.state != wf.State.DRAFT.value).order_by(EgressRequest.id.desc())
        elif scope == "all":
            q = q.where(EgressRequest.state != wf.State.DRAFT.value).order_by(EgressRequest.id.desc())
        return [self._summary(r) for r in s.execute(q.limit(limit).offset(offset)).scalars()]

    def _view_file(self, f: EgressFile, votes: list[wf.Vote], facts: wf.RequestFacts) -> dict[str, Any]:
        file_votes = [v for v in facts.votes if v.file_id == f.id]
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
                {"checker": v.checker, "decision": v.decision.value} for v in votes if v.file_id == f.id
            ],
            "status": None if wf.independent_phase(facts) else wf.file_status(facts.author, file_votes),
        }

    def request_view(self, who: str, rid: int) -> dict[str, Any]:
        """Everything a viewer may see of a request, with the independent phase applied."""

        def op() -> dict[str, Any]:
            return self._cached(("view", who, rid), lambda s: self._view(s, who, rid))

        return self.audited(who, "view", "egress_request", rid, op)

    def _view(self, s: Session, who: str, rid: int) -> dict[str, Any]:
        req = self._request(s, rid)
        actor, facts = self._checked(s, who, wf.Action.VIEW, req)
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
            **self._summary(req),
            "decided_at": _iso(req.decided_at),
            "groups": [
                {"id": g.id, "name": g.name, "context": g.context, "controls": g.controls} for g in req.groups
            ],
            "files": [self._view_file(f, votes, facts) for f in self._active_files(req)],
            "comments": shown_comments,
            "independent_phase": wf.independent_phase(facts),
            "problems": self.submission_problems(s, req) if req.state in wf.EDITABLE else [],
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
            "can": sorted(a.value for a in wf.Action if wf.may(a, actor, facts)),
            "roles": sorted(actor.roles),
        }

    def file_content(self, who: str, file_id: int, limit: int | None = None) -> tuple[dict[str, Any], bytes]:
        def op() -> tuple[dict[str, Any], bytes]:
            with self.reading() as s:
                f = self._file(s, file_id)
                self._check(s, who, wf.Action.VIEW, f.request)
                meta = {
                    "id": f.id,
                    "name": f.name,
                    "sha256": f.sha256,
                    "size": f.size,
                    "request_id": f.request_id,
                    "checks": f.checks,
                }
            return meta, self.store.read(meta["sha256"], limit)

        return self.audited(who, "view", "egress_file", file_id, op)

    def workspace(self, who: str, project: str, reldir: str = "") -> list[Entry]:
        def op() -> list[Entry]:
            with self.reading() as s:
                if not wf.can_create(self._actor(s, who, project)):
                    raise Denied(f"You are not a researcher on project {project}.")
            return list_workspace(self.settings.home_dir(project, who), reldir)

        return self.audited(who, "workspace", "project", project, op)

    def workspace_preview(self, who: str, project: str, relpath: str) -> bytes:
        def op() -> bytes:
            with self.reading() as s:
                if not wf.can_create(self._actor(s, who, project)):
                    raise Denied(f"You are not a researcher on project {project}.")
            home = self.settings.home_dir(project, who)
            with open_workspace_file(home, relpath, self.settings.egress_max_file_bytes) as wsf:
                return os.pread(wsf.fd, PREVIEW_BYTES, 0)

        return self.audited(who, "preview", "project", project, op)

    def audit_log(
        self,
        who: str,
        actor: str = "",
        action: str = "",
        object_id: str = "",
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        def op() -> list[dict[str, Any]]:
            self._require_admin(who, "Only administrators can read the audit log.")
            with self.reading() as s:
                q = select(AuditEvent).order_by(AuditEvent.id.desc())
                if actor:
                    q = q.where(AuditEvent.actor == actor)
                if action:
                    q = q.where(AuditEvent.action.startswith(action, autoescape=True))
                if object_id:
                    q = q.where(AuditEvent.object_id == object_id)
                rows = s.execute(q.limit(max(1, min(limit, 500))).offset(max(0, offset))).scalars()
                return [
                    {
                        "id": e.id,
                        "time": _iso(e.time),
                        "actor": e.actor,
                        "action": e.action,
                        "object_type": e.object_type,
                        "object_id": e.object_id,
                        "details": json.loads(json.dumps(e.details)),
                        "hash": e.hash,
                    }
                    for e in rows
                ]

        return self.audited(who, "audit_log", "audit", "-", op)

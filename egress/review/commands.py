"""Egress commands: every change to a request. Check the rules, do the I/O, write the audit event.

Slow I/O (copying a workspace file, running the disclosure checks, writing a bundle) happens between
a read phase and a short write transaction that re-checks everything it relied on, so a 100 MB copy
never holds the database write lock. Refusals are audited by `refusals_audited` (egress.review.base).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from egress.review import workflow as wf
from egress.review.base import EgressContext, refusals_audited
from egress.review.bundle import BundleFile, build_bundle, safe_member_name, verify_bundle
from egress.review.checks import StoredFile, run_checks
from egress.review.crate import release_crate
from egress.review.errors import BadInput, Conflict, Denied, EgressError, NotFound
from egress.review.facts import (
    active_files,
    actor_in,
    latest_votes,
    load_file,
    load_request,
    move,
    permitted,
    request_facts,
)
from egress.review.models import (
    EgressComment,
    EgressDownload,
    EgressFile,
    EgressGroup,
    EgressRelease,
    EgressRequest,
    EgressReview,
)
from egress.review.reruns import reproducing_rerun
from egress.review.storage import open_workspace_file
from hub.kernel import audit
from hub.kernel.audit_actions import AuditAction as A
from hub.kernel.clock import utcnow
from hub.kernel.db import valid_row_id
from hub.kernel.hashing import file_sha256
from hub.kernel.signing import InvalidRecord, load_keyset
from hub.registry.models import Project

MAX_TEXT = 10_000


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def submission_problems(req: EgressRequest) -> list[str]:
    files = active_files(req)
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


class EgressCommands:
    def __init__(self, ctx: EgressContext) -> None:
        self.ctx = ctx

    def recover(self) -> None:
        """Remove what a crash can leave half-written (blob and bundle temporaries); call on start."""
        self.ctx.store.clean_temporary()
        releases = self.ctx.settings.egress_dir / "releases"
        if releases.is_dir():
            for tmp in releases.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)

    # -- requests and groups -----------------------------------------------------------------

    @refusals_audited(A.EGRESS_REFUSED_CREATE, "project")
    def create_request(self, who: str, project: str, title: str) -> int:
        title_ = title.strip()
        if not title_ or len(title_) > 200:
            raise BadInput("Give the request a title of 1 to 200 characters.")
        with self.ctx.writing() as s:
            if s.execute(select(Project.id).where(Project.slug == project)).scalar() is None:
                raise NotFound(f"There is no project called {project!r}.")
            if not wf.can_create(actor_in(s, who, project)):
                raise Denied(f"You are not a researcher on project {project}; ask its lead to add you.")
            req = EgressRequest(project_slug=project, author=who, title=title_)
            s.add(req)
            s.flush()
            audit.record(
                s,
                who,
                A.EGRESS_REQUEST_CREATE,
                "egress_request",
                str(req.id),
                {"project": project, "title": title_},
            )
            return req.id

    @refusals_audited(A.EGRESS_REFUSED_EDIT, "egress_request")
    def add_group(self, who: str, rid: int, name: str, context: str = "", controls: str = "") -> int:
        name_ = name.strip()
        if not name_ or len(name_) > 100:
            raise BadInput("Give the group a name of 1 to 100 characters.")
        with self.ctx.writing() as s:
            req = load_request(s, rid)
            permitted(s, who, wf.RequestAction.EDIT, req)
            if any(g.name == name_ for g in req.groups):
                raise Conflict(f"This request already has a group called {name_!r}.")
            g = EgressGroup(request=req, name=name_, context=context.strip(), controls=controls.strip())
            s.add(g)
            s.flush()
            audit.record(s, who, A.EGRESS_GROUP_ADD, "egress_request", str(rid), {"group": name_})
            return g.id

    @refusals_audited(A.EGRESS_REFUSED_EDIT, "egress_group")
    def update_group(self, who: str, group_id: int, context: str, controls: str) -> None:
        with self.ctx.writing() as s:
            g = s.get(EgressGroup, group_id) if valid_row_id(group_id) else None
            if g is None:
                raise NotFound(f"There is no group {group_id}.")
            permitted(s, who, wf.RequestAction.EDIT, g.request)
            g.context, g.controls = context.strip(), controls.strip()
            g.request.updated_at = utcnow()
            audit.record(
                s, who, A.EGRESS_GROUP_UPDATE, "egress_request", str(g.request_id), {"group": g.name}
            )

    # -- files -------------------------------------------------------------------------------

    def _copy_in(self, who: str, project: str, relpath: str) -> tuple[str, str, int]:
        home = self.ctx.settings.home_dir(project, who)
        limit = self.ctx.settings.egress_max_file_bytes
        with open_workspace_file(home, relpath, limit) as wsf:
            sha, size = self.ctx.store.put_fd(wsf.fd, limit)
            return wsf.relpath, sha, size

    @refusals_audited(A.EGRESS_REFUSED_ADD_FILE, "egress_request")
    def add_file(self, who: str, rid: int, group_id: int, relpath: str, kind: str) -> int:
        try:
            kind_ = wf.FileKind(kind)
        except ValueError:
            raise BadInput("A file is either 'output' (to be released) or 'supporting'.") from None
        with self.ctx.reading() as s:  # read phase: may this person add here at all?
            req = load_request(s, rid)
            permitted(s, who, wf.RequestAction.EDIT, req)
            project = req.project_slug
        clean, sha, size = self._copy_in(who, project, relpath)
        with self.ctx.writing() as s:  # write phase: re-check, then record
            req = load_request(s, rid)
            permitted(s, who, wf.RequestAction.EDIT, req)
            group = s.get(EgressGroup, group_id) if valid_row_id(group_id) else None
            if group is None or group.request_id != rid:
                raise NotFound(f"Request {rid} has no group {group_id}.")
            if any(f.relpath == clean for f in active_files(req)):
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
                A.EGRESS_FILE_ADD,
                "egress_request",
                str(rid),
                {"file": f.id, "path": clean, "sha256": sha, "size": size, "kind": kind_.value},
            )
            return f.id

    @refusals_audited(A.EGRESS_REFUSED_UPDATE_FILE, "egress_file")
    def update_file(self, who: str, file_id: int) -> int:
        """Take the file's current bytes from the workspace; a changed file starts its reviews afresh."""
        with self.ctx.reading() as s:
            f = load_file(s, file_id)
            permitted(s, who, wf.RequestAction.EDIT, f.request)
            project, relpath, rid = f.request.project_slug, f.relpath, f.request_id
        _, sha, size = self._copy_in(who, project, relpath)
        with self.ctx.writing() as s:
            f = load_file(s, file_id)
            permitted(s, who, wf.RequestAction.EDIT, f.request)
            if sha != f.sha256:
                old = f.sha256
                f.sha256, f.size, f.version, f.checks = sha, size, f.version + 1, None
                f.request.updated_at = utcnow()
                audit.record(
                    s,
                    who,
                    A.EGRESS_FILE_UPDATE,
                    "egress_request",
                    str(rid),
                    {"file": f.id, "path": relpath, "old_sha256": old, "sha256": sha, "version": f.version},
                )
            return f.version

    @refusals_audited(A.EGRESS_REFUSED_REMOVE_FILE, "egress_file")
    def remove_file(self, who: str, file_id: int) -> None:
        with self.ctx.writing() as s:
            f = load_file(s, file_id)
            permitted(s, who, wf.RequestAction.EDIT, f.request)
            f.removed_at = utcnow()
            audit.record(
                s,
                who,
                A.EGRESS_FILE_REMOVE,
                "egress_request",
                str(f.request_id),
                {"file": f.id, "path": f.relpath},
            )

    # -- automated checks and submission -----------------------------------------------------

    @refusals_audited(A.EGRESS_REFUSED_PRECHECK, "egress_request")
    def precheck(self, who: str, rid: int) -> dict[int, dict[str, Any]]:
        with self.ctx.reading() as s:
            req = load_request(s, rid)
            permitted(s, who, wf.RequestAction.PRECHECK, req)
            files = [StoredFile.of(f) for f in active_files(req)]
            project = req.project_slug
        return run_checks(self.ctx, project, files)

    @refusals_audited(A.EGRESS_REFUSED_SUBMIT, "egress_request")
    def submit(self, who: str, rid: int) -> None:
        with self.ctx.reading() as s:
            req = load_request(s, rid)
            permitted(s, who, wf.RequestAction.SUBMIT, req)
            problems = submission_problems(req)
            if problems:
                raise BadInput(" ".join(problems))
            snapshot = {f.id: (f.sha256, f.version) for f in active_files(req)}
            files = [StoredFile.of(f) for f in active_files(req)]
            project = req.project_slug
        checks = run_checks(self.ctx, project, files)
        with self.ctx.writing() as s:
            req = load_request(s, rid)
            permitted(s, who, wf.RequestAction.SUBMIT, req)
            if {f.id: (f.sha256, f.version) for f in active_files(req)} != snapshot:
                raise Conflict("The request changed while its checks ran; submit it again.")
            for f in active_files(req):
                f.checks = checks[f.id]
            req.submitted_at = utcnow()
            verdicts = {str(fid): c["verdict"] for fid, c in checks.items()}
            move(s, who, req, wf.RequestAction.SUBMIT, {"verdicts": verdicts})

    @refusals_audited(A.EGRESS_REFUSED_WITHDRAW, "egress_request")
    def withdraw(self, who: str, rid: int) -> None:
        with self.ctx.writing() as s:
            req = load_request(s, rid)
            permitted(s, who, wf.RequestAction.WITHDRAW, req)
            req.decided_at = utcnow()
            move(s, who, req, wf.RequestAction.WITHDRAW)

    # -- reviews -----------------------------------------------------------------------------

    def vote(
        self,
        who: str,
        file_id: int,
        decision: str,
        comment: str = "",
        visibility: str = "checkers",
        *,
        sha256: str,
        override: bool = False,
    ) -> str:
        """Record a checker's vote on the file's bytes with this SHA-256 (what the checker saw); returns
        the request's state afterwards (approved ones get released). `override`: approve although the
        project requires reproduction and no re-run reproduced the file (recorded as such)."""
        state, rid = self._vote(who, file_id, decision, comment, visibility, sha256, override)
        if state == wf.State.APPROVED:
            try:
                self.release(who, rid)
            except (EgressError, InvalidRecord):  # already audited; stays approved, release can be retried
                return state
            state = wf.State.RELEASED.value
        return state

    @refusals_audited(A.EGRESS_REFUSED_VOTE, "egress_file")
    def _vote(
        self,
        who: str,
        file_id: int,
        decision: str,
        comment: str,
        visibility: str,
        sha256: str,
        override: bool,
    ) -> tuple[str, int]:
        try:
            decision_ = wf.Decision(decision)
            visibility_ = wf.Visibility(visibility)
        except ValueError:
            raise BadInput("Vote approve, changes or reject; comments are for checkers or author.") from None
        if len(comment) > MAX_TEXT:
            raise BadInput(f"Keep the comment under {MAX_TEXT:,} characters.")
        if override and decision_ is not wf.Decision.APPROVE:
            raise BadInput("Only an approval can be an override of the reproduction rule.")
        with self.ctx.writing() as s:
            f = load_file(s, file_id)
            req = f.request
            actor, _ = permitted(s, who, wf.RequestAction.VOTE, req)
            if sha256 != f.sha256:
                raise Conflict(
                    f"This vote is for a version of {f.name} that is no longer the one under review "
                    "(its SHA-256 differs); reload the file and review what it holds now."
                )
            s.add(
                EgressReview(
                    request_id=req.id,
                    file_id=f.id,
                    file_version=f.version,
                    file_sha256=f.sha256,
                    checker=who,
                    decision=decision_.value,
                    override=override,
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
                A.EGRESS_REVIEW_VOTE,
                "egress_request",
                str(req.id),
                {
                    "file": f.id,
                    "version": f.version,
                    "sha256": f.sha256,
                    "decision": decision_.value,
                    "override": override,
                },
            )
            if req.state == wf.State.SUBMITTED:
                move(s, who, req, wf.RequestAction.VOTE)
            if wf.may(wf.RequestAction.APPROVE, actor, request_facts(s, req)):
                req.decided_at = utcnow()
                move(s, who, req, wf.RequestAction.APPROVE)
            return req.state, req.id

    def _decide(self, who: str, rid: int, action: wf.RequestAction, comment: str) -> None:
        with self.ctx.writing() as s:
            req = load_request(s, rid)
            permitted(s, who, action, req)
            if comment.strip():
                s.add(
                    EgressComment(
                        request_id=rid,
                        author=who,
                        body=comment.strip(),
                        visibility=wf.Visibility.AUTHOR.value,
                    )
                )
            if action is wf.RequestAction.REJECT:
                req.decided_at = utcnow()
            move(s, who, req, action)

    @refusals_audited(A.EGRESS_REFUSED_RETURN, "egress_request")
    def return_request(self, who: str, rid: int, comment: str = "") -> None:
        self._decide(who, rid, wf.RequestAction.RETURN, comment)

    @refusals_audited(A.EGRESS_REFUSED_REJECT, "egress_request")
    def reject_request(self, who: str, rid: int, comment: str = "") -> None:
        self._decide(who, rid, wf.RequestAction.REJECT, comment)

    @refusals_audited(A.EGRESS_REFUSED_COMMENT, "egress_request")
    def comment(
        self, who: str, rid: int, body: str, visibility: str = "author", file_id: int | None = None
    ) -> int:
        body_ = body.strip()
        if not body_ or len(body_) > MAX_TEXT:
            raise BadInput(f"Write a comment of 1 to {MAX_TEXT:,} characters.")
        try:
            vis = wf.Visibility(visibility)
        except ValueError:
            raise BadInput("Comments are visible to 'checkers' or to the 'author' too.") from None
        with self.ctx.writing() as s:
            req = load_request(s, rid)
            permitted(s, who, wf.RequestAction.COMMENT, req)
            if file_id is not None and load_file(s, file_id).request_id != rid:
                raise NotFound(f"Request {rid} has no file {file_id}.")
            if who == req.author:
                vis = wf.Visibility.AUTHOR
            c = EgressComment(request_id=rid, file_id=file_id, author=who, body=body_, visibility=vis.value)
            s.add(c)
            s.flush()
            audit.record(
                s,
                who,
                A.EGRESS_COMMENT_ADD,
                "egress_request",
                str(rid),
                {"comment": c.id, "visibility": vis.value},
            )
            return c.id

    # -- release, download, revoke -----------------------------------------------------------

    def _record_claims(self, s: Session, req: EgressRequest) -> tuple[dict[str, Any], list[BundleFile]]:
        """The signed record: hashes, verdicts, rule names and decisions for the released files only.

        Nothing a researcher wrote (title, group context, comments) and nothing of a supporting file or
        of a finding's message goes in: the record leaves with the bundle, and no checker approved those.
        """
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
                    "sha256": r.file_sha256,
                    "override": bool(r.override),  # approved though no re-run reproduced it
                    "at": _iso(r.created_at),
                }
            )
        groups = {g.id: g for g in req.groups}
        files, bundle_files, used = [], [], set()
        for f in active_files(req):
            if f.kind != wf.FileKind.OUTPUT:
                continue
            path = "files/" + safe_member_name(groups[f.group_id].name, f.name)
            while path in used:
                path = path.replace("files/", f"files/{f.id}-", 1)
            used.add(path)
            checks = f.checks or {}
            files.append(
                {
                    "id": f.id,
                    "path": path,
                    "sha256": f.sha256,
                    "size": f.size,
                    "version": f.version,
                    "verdict": checks.get("verdict"),
                    "rules": sorted({(x["rule"], x["verdict"]) for x in checks.get("findings", [])}),
                    "reviews": [h for h in history.get(f.id, []) if h["sha256"] == f.sha256],
                }
            )
            bundle_files.append(BundleFile(path, f.sha256))
        claims = {
            "request": {"id": req.id},
            "project": req.project_slug,
            "author": req.author,
            "submitted_at": _iso(req.submitted_at),
            "approved_at": _iso(req.decided_at),
            "reviewers": sorted({v.checker for v in latest_votes(s, req)}),
            "files": files,
        }
        return claims, bundle_files

    @refusals_audited(A.EGRESS_REFUSED_RELEASE, "egress_request")
    def release(self, who: str, rid: int) -> None:
        with self.ctx.reading() as s:
            req = load_request(s, rid)
            permitted(s, who, wf.RequestAction.RELEASE, req)
            claims, bundle_files = self._record_claims(s, req)
        for bf in bundle_files:
            if not self.ctx.store.verify(bf.sha256):
                raise InvalidRecord(
                    f"The stored copy of {bf.path} no longer matches its hash; not releasing."
                )
        claims["released_by"] = who
        claims["released_at"] = _iso(utcnow())
        with self.ctx.reading() as s:
            rerun = reproducing_rerun(s, rid, {f["id"]: f["sha256"] for f in claims["files"]})
        crate = release_crate(claims, rerun, self.ctx.settings.domain, self.ctx.settings.image)
        claims["crate_sha256"] = hashlib.sha256(crate).hexdigest()
        token = self.ctx.signer.sign(claims)
        name = f"request-{rid}-{utcnow().strftime('%Y%m%dT%H%M%S')}.zip"
        bundle_sha = build_bundle(
            self.ctx.settings.egress_dir / "releases" / name, token, bundle_files, self.ctx.store, crate
        )
        with self.ctx.writing() as s:
            req = load_request(s, rid)
            permitted(s, who, wf.RequestAction.RELEASE, req)
            kid = self.ctx.signer.ensure_key()
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
            move(s, who, req, wf.RequestAction.RELEASE, {"bundle": name, "sha256": bundle_sha, "kid": kid})

    @refusals_audited(A.EGRESS_REFUSED_DOWNLOAD, "egress_request")
    def download(self, who: str, rid: int) -> tuple[Path, str]:
        """Check, re-verify and audit a download; returns (bundle path, download file name)."""
        with self.ctx.writing() as s:
            req = load_request(s, rid)
            permitted(s, who, wf.RequestAction.DOWNLOAD, req)
            rel = req.release
            assert rel is not None  # released state implies a release row
            path = self.ctx.settings.egress_dir / "releases" / rel.bundle_name
            if not path.is_file() or file_sha256(path) != rel.bundle_sha256:
                raise InvalidRecord("The release bundle on disk does not match its recorded hash.")
            verify_bundle(path, load_keyset(self.ctx.signer.keyset_path))
            s.add(EgressDownload(release_id=rel.id, username=who))
            audit.record(
                s,
                who,
                A.EGRESS_RELEASE_DOWNLOAD,
                "egress_request",
                str(rid),
                {"bundle": rel.bundle_name, "sha256": rel.bundle_sha256},
            )
            return path, f"{req.project_slug}-request-{rid}.zip"

    @refusals_audited(A.EGRESS_REFUSED_REVOKE, "egress_request")
    def revoke(self, who: str, rid: int, reason: str = "") -> None:
        with self.ctx.writing() as s:
            req = load_request(s, rid)
            permitted(s, who, wf.RequestAction.REVOKE, req)
            assert req.release is not None
            req.release.revoked_by, req.release.revoked_at = who, utcnow()
            move(s, who, req, wf.RequestAction.REVOKE, {"reason": reason.strip()})

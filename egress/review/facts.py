"""Reading a request as the rules see it: its files, its current votes, the acting person's roles.

Every operation loads its request here, asks `egress.review.workflow` whether the person may act,
and moves the request with `move`, which writes the state change's audit event.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, selectinload

from egress.review import workflow as wf
from egress.review.errors import Denied, NotFound
from egress.review.models import EgressFile, EgressRelease, EgressRequest, EgressRerun, EgressReview
from egress.review.reproduce import Outcome
from hub.kernel import audit
from hub.kernel.audit_actions import AuditAction
from hub.kernel.clock import utcnow
from hub.kernel.db import valid_row_id
from hub.registry.access import project_roles
from hub.registry.models import Project, User

# The audit event of each state change.
MOVE_ACTIONS: dict[wf.RequestAction, AuditAction] = {
    wf.RequestAction.SUBMIT: AuditAction.EGRESS_REQUEST_SUBMIT,
    wf.RequestAction.WITHDRAW: AuditAction.EGRESS_REQUEST_WITHDRAW,
    wf.RequestAction.VOTE: AuditAction.EGRESS_REQUEST_VOTE,
    wf.RequestAction.RETURN: AuditAction.EGRESS_REQUEST_RETURN,
    wf.RequestAction.REJECT: AuditAction.EGRESS_REQUEST_REJECT,
    wf.RequestAction.APPROVE: AuditAction.EGRESS_REQUEST_APPROVE,
    wf.RequestAction.RELEASE: AuditAction.EGRESS_REQUEST_RELEASE,
    wf.RequestAction.REVOKE: AuditAction.EGRESS_REQUEST_REVOKE,
}


def is_admin(s: Session, who: str) -> bool:
    user = s.execute(select(User).where(User.username == who)).scalar_one_or_none()
    return bool(user and user.is_admin and not user.disabled)


def actor_in(s: Session, who: str, project: str) -> wf.RequestActor:
    return wf.RequestActor(who, frozenset(project_roles(s, who, project)), is_admin(s, who))


def load_request(s: Session, rid: int) -> EgressRequest:
    # One round trip for the request and everything the rules look at.
    options = [
        selectinload(EgressRequest.files),
        selectinload(EgressRequest.groups),
        joinedload(EgressRequest.release).selectinload(EgressRelease.downloads),
    ]
    req = s.get(EgressRequest, rid, options=options) if valid_row_id(rid) else None
    if req is None:
        raise NotFound(f"There is no egress request {rid}.")
    return req


def load_file(s: Session, file_id: int) -> EgressFile:
    f = s.get(EgressFile, file_id) if valid_row_id(file_id) else None
    if f is None or f.removed_at is not None:
        raise NotFound(f"There is no file {file_id} in any request.")
    return f


def active_files(req: EgressRequest) -> list[EgressFile]:
    return [f for f in req.files if f.removed_at is None]


def latest_votes(s: Session, req: EgressRequest) -> list[EgressReview]:
    """The latest review of each checker on each current file version."""
    versions = {f.id: f.version for f in active_files(req)}
    latest: dict[tuple[int, str], EgressReview] = {}
    rows = s.execute(select(EgressReview).where(EgressReview.request_id == req.id).order_by(EgressReview.id))
    for r in rows.scalars():
        if versions.get(r.file_id) == r.file_version:
            latest[(r.file_id, r.checker)] = r
    return list(latest.values())


def request_facts(s: Session, req: EgressRequest) -> wf.RequestFacts:
    files = active_files(req)
    votes = tuple(
        wf.Vote(r.checker, r.file_id, wf.Decision(r.decision), bool(r.override)) for r in latest_votes(s, req)
    )
    downloaded = bool(req.release and req.release.downloads)
    outputs = [f for f in files if f.kind == wf.FileKind.OUTPUT]
    return wf.RequestFacts(
        wf.State(req.state),
        req.author,
        frozenset(f.id for f in outputs),
        votes,
        downloaded,
        unreproduced_outputs(s, req, outputs),
    )


def unreproduced_outputs(s: Session, req: EgressRequest, outputs: list[EgressFile]) -> frozenset[int]:
    """Where the project requires reproduction: the outputs whose current bytes no re-run reproduced."""
    required = s.execute(
        select(Project.require_reproduction).where(Project.slug == req.project_slug)
    ).scalar()
    if not required:
        return frozenset()
    reproduced: set[tuple[int, str]] = set()
    for results in s.execute(select(EgressRerun.results).where(EgressRerun.request_id == req.id)).scalars():
        for fid, r in (results or {}).items():
            if Outcome(r["outcome"]).reproduced:
                reproduced.add((int(fid), r.get("sha256", "")))
    return frozenset(f.id for f in outputs if (f.id, f.sha256) not in reproduced)


def permitted(
    s: Session, who: str, action: wf.RequestAction, req: EgressRequest
) -> tuple[wf.RequestActor, wf.RequestFacts]:
    """The actor and the request's facts, if the rules let `who` take `action` now; else Denied."""
    actor = actor_in(s, who, req.project_slug)
    facts = request_facts(s, req)
    try:
        wf.check_request(action, actor, facts)
    except wf.Forbidden as exc:
        raise Denied(str(exc)) from None
    return actor, facts


def move(
    s: Session, who: str, req: EgressRequest, action: wf.RequestAction, details: dict | None = None
) -> None:
    """Put the request in the state `action` leads to, with its audit event."""
    new = wf.next_state(wf.State(req.state), action)
    old, req.state = req.state, new.value
    req.updated_at = utcnow()
    audit.record(
        s,
        who,
        MOVE_ACTIONS[action],
        "egress_request",
        str(req.id),
        {"from": old, "to": new.value, "project": req.project_slug, **(details or {})},
    )

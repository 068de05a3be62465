"""Egress review rules: request states, transitions and who may do what. Pure: no I/O.

Everything the service decides about a request goes through `check_request()` (may this actor do
this action now?) and `next_state()` (where does it go?). Vote counting and the independent-review phase live
here too, so the rules a custodian has to trust can be read in one file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from hub.registry.vocabulary import MEMBER_ROLES, Role


class State(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    UNDER_REVIEW = "under_review"
    RETURNED = "returned"
    APPROVED = "approved"
    RELEASED = "released"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    REVOKED = "revoked"


class RequestAction(StrEnum):
    VIEW = "view"
    EDIT = "edit"  # add, update or remove files; edit groups
    PRECHECK = "precheck"
    SUBMIT = "submit"
    WITHDRAW = "withdraw"
    VOTE = "vote"
    COMMENT = "comment"
    RETURN = "return"
    REJECT = "reject"
    APPROVE = "approve"  # taken by the service when the last needed approval arrives
    RELEASE = "release"
    DOWNLOAD = "download"
    REVOKE = "revoke"
    RERUN = "rerun"  # re-execute the request's notebook in a sealed container and compare outputs


class Decision(StrEnum):
    APPROVE = "approve"
    CHANGES = "changes"
    REJECT = "reject"


class Visibility(StrEnum):
    CHECKERS = "checkers"
    AUTHOR = "author"  # checkers and the author


class RerunStatus(StrEnum):
    QUEUED = "queued"  # waiting for a slot, or running
    DONE = "done"  # the notebook ran to the end; the results say what it reproduced
    FAILED = "failed"  # the notebook raised, or could not be run (the log says which)
    STOPPED = "stopped"  # it ran past the project's time limit


class FileKind(StrEnum):
    OUTPUT = "output"
    SUPPORTING = "supporting"


TERMINAL = frozenset({State.RELEASED, State.REJECTED, State.WITHDRAWN, State.REVOKED})
EDITABLE = frozenset({State.DRAFT, State.RETURNED})
IN_REVIEW = frozenset({State.SUBMITTED, State.UNDER_REVIEW})
# Roles (from hub.registry.access.project_roles) that make someone a member who may author requests.
AUTHOR_ROLES = MEMBER_ROLES
APPROVALS_NEEDED = 2

# The state machine. Actions missing here never change the state (VIEW, COMMENT, DOWNLOAD, ...).
TRANSITIONS: dict[tuple[State, RequestAction], State] = {
    (State.DRAFT, RequestAction.SUBMIT): State.SUBMITTED,
    (State.RETURNED, RequestAction.SUBMIT): State.SUBMITTED,
    (State.DRAFT, RequestAction.WITHDRAW): State.WITHDRAWN,
    (State.SUBMITTED, RequestAction.WITHDRAW): State.WITHDRAWN,
    (State.UNDER_REVIEW, RequestAction.WITHDRAW): State.WITHDRAWN,
    (State.RETURNED, RequestAction.WITHDRAW): State.WITHDRAWN,
    (State.SUBMITTED, RequestAction.VOTE): State.UNDER_REVIEW,
    (State.UNDER_REVIEW, RequestAction.VOTE): State.UNDER_REVIEW,
    (State.UNDER_REVIEW, RequestAction.RETURN): State.RETURNED,
    (State.UNDER_REVIEW, RequestAction.REJECT): State.REJECTED,
    (State.UNDER_REVIEW, RequestAction.APPROVE): State.APPROVED,
    (State.APPROVED, RequestAction.RELEASE): State.RELEASED,
    (State.RELEASED, RequestAction.REVOKE): State.REVOKED,
}


class Forbidden(Exception):
    """The actor may not do this now. The message says why, in words a person can act on."""


@dataclass(frozen=True)
class RequestActor:
    username: str
    roles: frozenset[Role] = frozenset()  # this actor's roles in the request's project
    is_admin: bool = False


@dataclass(frozen=True)
class Vote:
    checker: str
    file_id: int
    decision: Decision
    override: bool = False  # approved although a re-run did not reproduce the file (recorded)


@dataclass(frozen=True)
class RequestFacts:
    """What the rules need to know about a request (current file versions only)."""

    state: State
    author: str
    output_files: frozenset[int] = frozenset()
    votes: tuple[Vote, ...] = ()  # the latest vote of each checker on each current file
    downloaded: bool = False
    # Output files a re-run has not reproduced, where the project requires reproduction: an approval
    # of one counts only as an explicit override.
    unreproduced: frozenset[int] = frozenset()


def next_state(state: State, action: RequestAction) -> State:
    return TRANSITIONS.get((state, action), state)


def is_checker_for(actor: RequestActor, facts: RequestFacts) -> bool:
    """A checker of the project who is not the author: the author never reviews their own outputs."""
    return Role.CHECKER in actor.roles and actor.username != facts.author


def completed_reviewers(facts: RequestFacts) -> set[str]:
    """Checkers (not the author) who have voted on every output file."""
    if not facts.output_files:
        return set()
    seen: dict[str, set[int]] = {}
    for v in facts.votes:
        if v.checker != facts.author and v.file_id in facts.output_files:
            seen.setdefault(v.checker, set()).add(v.file_id)
    return {c for c, files in seen.items() if files >= facts.output_files}


def independent_phase(facts: RequestFacts) -> bool:
    """True until two checkers have each reviewed every output file."""
    return len(completed_reviewers(facts)) < APPROVALS_NEEDED


def file_status(author: str, votes: Iterable[Vote]) -> str:
    """approved | rejected | changes | pending, from the latest votes on one file version."""
    by_checker = {v.checker: v.decision for v in votes if v.checker != author}
    approvals = sum(1 for d in by_checker.values() if d is Decision.APPROVE)
    if approvals >= APPROVALS_NEEDED:
        return "approved"
    if Decision.REJECT in by_checker.values():
        return "rejected"
    if Decision.CHANGES in by_checker.values():
        return "changes"
    return "pending"


def counted_votes(facts: RequestFacts, file_id: int) -> list[Vote]:
    """The votes on a file that count: on a file the project requires reproduced and no re-run
    reproduced, an approval counts only when it is an override."""
    votes = [v for v in facts.votes if v.file_id == file_id]
    if file_id in facts.unreproduced:
        votes = [v for v in votes if v.decision is not Decision.APPROVE or v.override]
    return votes


def all_outputs_approved(facts: RequestFacts) -> bool:
    if not facts.output_files:
        return False
    return all(file_status(facts.author, counted_votes(facts, f)) == "approved" for f in facts.output_files)


def visible_votes(viewer: RequestActor, facts: RequestFacts) -> list[Vote]:
    """Votes a viewer may see: during the independent phase a checker sees only their own votes
    and the author sees none; afterwards everyone who may view the request sees all of them."""
    if not independent_phase(facts) or viewer.is_admin:
        return list(facts.votes)
    return [v for v in facts.votes if v.checker == viewer.username]


def comment_visible(
    viewer: RequestActor, facts: RequestFacts, commenter: str, visibility: Visibility
) -> bool:
    if viewer.is_admin or commenter == viewer.username:
        return True
    if commenter == facts.author:
        return True  # the author's own comments are for everyone on the request
    if viewer.username == facts.author:
        return visibility is Visibility.AUTHOR and not independent_phase(facts)
    # another checker's comment: hidden while reviews are independent
    return not independent_phase(facts)


def _deny(message: str) -> None:
    raise Forbidden(message)


def check_request(action: RequestAction, actor: RequestActor, facts: RequestFacts) -> None:
    """Raise Forbidden unless `actor` may take `action` on the request now."""
    state = facts.state
    is_author = actor.username == facts.author
    member = bool(actor.roles & AUTHOR_ROLES)

    if action is RequestAction.VIEW:
        if actor.is_admin or (is_author and member):
            return
        if state is State.DRAFT:
            _deny("This request is still a draft; only its author can see it.")
        if is_checker_for(actor, facts) or Role.LEAD in actor.roles:
            return
        _deny("Only the author, the project lead and the project's output checkers can see this request.")

    elif action in (RequestAction.EDIT, RequestAction.PRECHECK, RequestAction.SUBMIT, RequestAction.WITHDRAW):
        if not is_author:
            _deny("Only the author of a request can change, check, submit or withdraw it.")
        if not member:
            _deny("You are no longer a member of this project; ask the project lead to add you again.")
        if action is RequestAction.WITHDRAW:
            if (state, action) not in TRANSITIONS:
                _deny(f"A request that is {state} can no longer be withdrawn.")
        elif state not in EDITABLE:
            _deny(f"A request that is {state} cannot be changed; it can be edited while draft or returned.")

    elif action is RequestAction.VOTE:
        if is_author:
            _deny("You cannot review your own request; another output checker must review it.")
        if not is_checker_for(actor, facts):
            _deny("Only output checkers assigned to this project can review its requests.")
        if state not in IN_REVIEW:
            _deny(f"A request that is {state} is not open for review.")

    elif action is RequestAction.COMMENT:
        if not ((is_author and member) or is_checker_for(actor, facts)):
            _deny("Only the author and the project's output checkers can comment on a request.")
        if state in TERMINAL or state is State.DRAFT:
            _deny(f"A request that is {state} is closed for comments.")

    elif action is RequestAction.RERUN:
        if not ((is_author and member) or is_checker_for(actor, facts)):
            _deny("Only the author and the project's output checkers can re-run a request's notebook.")
        if state in TERMINAL or state is State.DRAFT:
            _deny(f"A request that is {state} cannot be re-run; submit it first.")

    elif action in (RequestAction.RETURN, RequestAction.REJECT):
        if is_author or not is_checker_for(actor, facts):
            _deny("Only an output checker of this project who is not the author can return or reject it.")
        if state is not State.UNDER_REVIEW:
            _deny(f"A request that is {state} is not under review.")
        if independent_phase(facts):
            _deny("Two checkers must each review every output file before it is returned or rejected.")
        decisions = {v.decision for v in facts.votes}
        if action is RequestAction.REJECT and Decision.REJECT not in decisions:
            _deny("Nothing was voted 'reject'; return the request for changes instead.")
        if action is RequestAction.RETURN and all_outputs_approved(facts):
            _deny("Every output file is approved; there is nothing to return.")

    elif action is RequestAction.APPROVE:
        if is_author or not is_checker_for(actor, facts):
            _deny("Only an output checker of this project who is not the author can approve it.")
        if state is not State.UNDER_REVIEW:
            _deny(f"A request that is {state} is not under review.")
        if not all_outputs_approved(facts):
            _deny("Every output file needs approvals from two different checkers who are not the author.")

    elif action is RequestAction.RELEASE:
        if is_author:
            _deny("The author cannot release their own request.")
        if not (actor.is_admin or is_checker_for(actor, facts)):
            _deny("Only an output checker of this project or an administrator can release a request.")
        if state is not State.APPROVED:
            _deny(f"A request that is {state} cannot be released; it must be approved first.")

    elif action is RequestAction.DOWNLOAD:
        if not ((is_author and member) or Role.LEAD in actor.roles):
            _deny("Only the author and the project lead can download a release.")
        if state is not State.RELEASED:
            _deny(f"A request that is {state} has no release to download.")

    elif action is RequestAction.REVOKE:
        if not actor.is_admin:
            _deny("Only an administrator can revoke a release.")
        if state is not State.RELEASED:
            _deny(f"A request that is {state} has no release to revoke.")
        if facts.downloaded:
            _deny("This release has already been downloaded; it can no longer be revoked.")

    else:  # pragma: no cover - every Action is handled above
        _deny(f"Unknown action {action}.")


def may(action: RequestAction, actor: RequestActor, facts: RequestFacts) -> bool:
    try:
        check_request(action, actor, facts)
    except Forbidden:
        return False
    return True


def can_create(actor: RequestActor) -> bool:
    """Authors must be members (researcher or lead) of the project the request is for."""
    return bool(actor.roles & AUTHOR_ROLES)


@dataclass(frozen=True)
class GroupFacts:
    name: str
    context: str
    controls: str
    files: tuple[tuple[str, FileKind], ...]  # (name, kind)


def submission_problems(groups: Iterable[GroupFacts]) -> list[str]:
    """What stops a request from being submitted; empty when it is ready."""
    problems: list[str] = []
    groups = list(groups)
    if not any(kind is FileKind.OUTPUT for g in groups for _, kind in g.files):
        problems.append("Add at least one output file.")
    for g in groups:
        if not g.files:
            problems.append(f"Group '{g.name}' has no files; add files or delete the group.")
        if not g.context.strip():
            problems.append(f"Group '{g.name}' needs context: describe what these outputs are.")
        if not g.controls.strip():
            problems.append(f"Group '{g.name}' needs controls: say which disclosure controls you applied.")
    return problems

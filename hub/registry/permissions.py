"""Pure governance rules: who may do what. No I/O: the registry operations feed in facts and act on
the answer.

Roles come from two places: global flags on the user (admin, custodian) and per-project memberships
(lead, researcher, checker). Nobody appoints themselves to anything, and a project that is closed,
suspended or past its expiry date opens nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from hub.registry.vocabulary import GrantStatus, ProjectStatus, Role


class NotAllowed(Exception):
    """The actor may not do this; the message says why and who can."""


class RegistryAction(StrEnum):
    ADD_USER = "add_user"
    DISABLE_USER = "disable_user"
    GRANT_ROLE = "grant_role"  # set admin / custodian flags
    REGISTER_DATASET = "register_dataset"
    CREATE_PROJECT = "create_project"
    CHANGE_PROJECT_STATUS = "change_project_status"  # suspend, resume (and close)
    CLOSE_PROJECT = "close_project"  # its lead may end her own project early
    SET_LIMITS = "set_limits"
    SET_SDC_RULES = "set_sdc_rules"  # per-project disclosure-check thresholds
    PROVISION = "provision"
    ADD_RESEARCHER = "add_researcher"
    REMOVE_RESEARCHER = "remove_researcher"
    ASSIGN_CHECKER = "assign_checker"
    REMOVE_CHECKER = "remove_checker"
    REQUEST_GRANT = "request_grant"
    APPROVE_GRANT = "approve_grant"
    REJECT_GRANT = "reject_grant"
    REVOKE_GRANT = "revoke_grant"
    DECIDE_APPLICATION = "decide_application"  # ask, return, reject or approve (issuing a permit)

    @property
    def phrase(self) -> str:
        return PHRASES[self]


PHRASES: dict[RegistryAction, str] = {
    RegistryAction.ADD_USER: "add users",
    RegistryAction.DISABLE_USER: "disable or enable users",
    RegistryAction.GRANT_ROLE: "change user roles",
    RegistryAction.REGISTER_DATASET: "register datasets",
    RegistryAction.CREATE_PROJECT: "create projects",
    RegistryAction.CHANGE_PROJECT_STATUS: "suspend, resume or close projects",
    RegistryAction.CLOSE_PROJECT: "close projects",
    RegistryAction.SET_LIMITS: "change workspace limits",
    RegistryAction.SET_SDC_RULES: "change disclosure-check rules",
    RegistryAction.PROVISION: "provision project data",
    RegistryAction.ADD_RESEARCHER: "add researchers",
    RegistryAction.REMOVE_RESEARCHER: "remove researchers",
    RegistryAction.ASSIGN_CHECKER: "assign output checkers",
    RegistryAction.REMOVE_CHECKER: "remove output checkers",
    RegistryAction.REQUEST_GRANT: "request datasets",
    RegistryAction.APPROVE_GRANT: "approve grants",
    RegistryAction.REJECT_GRANT: "reject grants",
    RegistryAction.REVOKE_GRANT: "revoke grants",
    RegistryAction.DECIDE_APPLICATION: "decide data access applications",
}


@dataclass(frozen=True)
class RegistryActor:
    username: str
    is_admin: bool = False
    is_custodian: bool = False
    disabled: bool = False
    # The actor's memberships in the project the action concerns ({"lead", "researcher", "checker"}).
    project_roles: frozenset[Role] = field(default_factory=frozenset)


@dataclass(frozen=True)
class ProjectState:
    slug: str
    status: str
    expires_at: datetime


def project_is_open(status: str, expires_at: datetime, now: datetime | None = None) -> bool:
    """Active and not yet expired: the only state in which a project gives access to anything."""
    return status == ProjectStatus.ACTIVE and (now or datetime.now(UTC)) < expires_at


def grant_is_active(status: str, expires_at: datetime, now: datetime | None = None) -> bool:
    return status == GrantStatus.APPROVED and (now or datetime.now(UTC)) < expires_at


def project_problem(project: ProjectState, now: datetime | None = None) -> str | None:
    """Why a project gives no access, or None when it is open."""
    if project.status != ProjectStatus.ACTIVE:
        return f"project {project.slug} is {project.status}"
    if not project_is_open(project.status, project.expires_at, now):
        return f"project {project.slug} expired on {project.expires_at:%Y-%m-%d}"
    return None


ADMIN_ONLY = {
    RegistryAction.ADD_USER,
    RegistryAction.DISABLE_USER,
    RegistryAction.GRANT_ROLE,
    RegistryAction.CREATE_PROJECT,
    RegistryAction.CHANGE_PROJECT_STATUS,
    RegistryAction.SET_LIMITS,
    RegistryAction.SET_SDC_RULES,
}
ADMIN_OR_CUSTODIAN = {
    RegistryAction.REGISTER_DATASET,
    RegistryAction.PROVISION,
    RegistryAction.ASSIGN_CHECKER,
    RegistryAction.REMOVE_CHECKER,
    RegistryAction.APPROVE_GRANT,
    RegistryAction.REJECT_GRANT,
    RegistryAction.REVOKE_GRANT,
}
LEAD_OR_ADMIN = {
    RegistryAction.CLOSE_PROJECT,
    RegistryAction.ADD_RESEARCHER,
    RegistryAction.REMOVE_RESEARCHER,
    RegistryAction.REQUEST_GRANT,
}
# Actions on a project's data or oversight: nobody who works on the project (as its lead, a
# researcher or one of its checkers), nor anyone it names, may take them: separation of duties.
NEEDS_INDEPENDENCE = {
    RegistryAction.APPROVE_GRANT,
    RegistryAction.REJECT_GRANT,
    RegistryAction.DECIDE_APPLICATION,
    RegistryAction.ASSIGN_CHECKER,
}
# Actions that appoint `target` to something: the actor may never be the target.
APPOINTING = {
    RegistryAction.GRANT_ROLE,
    RegistryAction.CREATE_PROJECT,
    RegistryAction.ADD_RESEARCHER,
    RegistryAction.ASSIGN_CHECKER,
}
# Actions that only make sense on an open (active, unexpired) project.
NEEDS_OPEN_PROJECT = {
    RegistryAction.ADD_RESEARCHER,
    RegistryAction.ASSIGN_CHECKER,
    RegistryAction.REQUEST_GRANT,
    RegistryAction.APPROVE_GRANT,
}


def may_read_permits(actor: RegistryActor) -> bool:
    """A project's data permits: for its members, who work under them, and for the custodians and
    administrators who issue and oversee permits. `actor.project_roles` are their roles in it."""
    return not actor.disabled and (actor.is_admin or actor.is_custodian or bool(actor.project_roles))


def require(
    action: RegistryAction,
    actor: RegistryActor,
    *,
    project: ProjectState | None = None,
    target: str | None = None,
    requested_by: str | None = None,
    named: frozenset[str] = frozenset(),
    now: datetime | None = None,
) -> None:
    """Raise NotAllowed unless `actor` may do `action`.

    `target` is the user being appointed/changed (for CREATE_PROJECT: the proposed lead);
    `requested_by` is the requester of the grant or the lead of the application being decided;
    `named` are the researchers an application names (they will work on the project).
    """
    who = actor.username
    if actor.disabled:
        raise NotAllowed(f"user {who} is disabled; ask an administrator to re-enable the account")

    if action in ADMIN_ONLY and not actor.is_admin:
        raise NotAllowed(f"only an administrator may {action.phrase}; {who} is not one")
    if action is RegistryAction.DECIDE_APPLICATION and not actor.is_custodian:
        # The health data access body decides; running the TRE does not make one a custodian.
        raise NotAllowed(f"only a data custodian may {action.phrase}; {who} is not one")
    if action in ADMIN_OR_CUSTODIAN and not (actor.is_admin or actor.is_custodian):
        hint = ""
        if action is RegistryAction.ASSIGN_CHECKER and Role.LEAD in actor.project_roles:
            hint = " (project leads cannot appoint output checkers)"
        raise NotAllowed(
            f"only an administrator or data custodian may {action.phrase}; {who} is neither{hint}"
        )
    if action in LEAD_OR_ADMIN and not (actor.is_admin or Role.LEAD in actor.project_roles):
        where = f" of {project.slug}" if project else ""
        raise NotAllowed(
            f"only the project lead{where} or an administrator may {action.phrase}; {who} is neither"
        )

    if action in APPOINTING and target is not None and target == who:
        raise NotAllowed(f"{who} cannot appoint themselves; another administrator must do it")
    if action is RegistryAction.DISABLE_USER and target == who:
        raise NotAllowed(f"{who} cannot disable their own account; another administrator must do it")

    if action in NEEDS_INDEPENDENCE:
        someone_else = "another custodian" if action is not RegistryAction.ASSIGN_CHECKER else "someone else"
        if requested_by is not None and requested_by == who:
            raise NotAllowed(f"{who} asked for this and cannot {action.phrase}; {someone_else} must")
        if actor.project_roles:
            roles = " and ".join(sorted(actor.project_roles))
            raise NotAllowed(
                f"{who} works on this project ({roles}) and cannot {action.phrase} for it; "
                f"{someone_else} must"
            )
        if who in named:
            raise NotAllowed(
                f"{who} is named as a researcher in this application and cannot decide it; "
                f"{someone_else} must"
            )

    if action in NEEDS_OPEN_PROJECT and project is not None:
        problem = project_problem(project, now)
        if problem:
            raise NotAllowed(f"{problem}: nothing can be added to it")


def allowed(action: RegistryAction, actor: RegistryActor, **context: object) -> bool:
    try:
        require(action, actor, **context)  # type: ignore[arg-type]
    except NotAllowed:
        return False
    return True

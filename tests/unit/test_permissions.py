"""Every role x every action, plus the rules that cut across roles (self-appointment, own requests,
inactive projects)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hub.registry.permissions import (
    NotAllowed,
    ProjectState,
    RegistryAction,
    RegistryActor,
    allowed,
    grant_is_active,
    project_is_open,
    require,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)
OPEN = ProjectState("study", "active", NOW + timedelta(days=30))

ROLES = {
    "nobody": RegistryActor("nobody"),
    "researcher": RegistryActor("res", project_roles=frozenset({"researcher"})),
    "checker": RegistryActor("chk", project_roles=frozenset({"checker"})),
    "lead": RegistryActor("lead", project_roles=frozenset({"lead"})),
    "custodian": RegistryActor("cus", is_custodian=True),
    "admin": RegistryActor("adm", is_admin=True),
    "disabled-admin": RegistryActor("old", is_admin=True, disabled=True),
}

A = RegistryAction
ADMIN = {"admin"}
CUSTODIAN_OR_ADMIN = {"custodian", "admin"}
LEAD_OR_ADMIN = {"lead", "admin"}
EXPECTED: dict[RegistryAction, set[str]] = {
    A.ADD_USER: ADMIN,
    A.DISABLE_USER: ADMIN,
    A.GRANT_ROLE: ADMIN,
    A.REGISTER_DATASET: CUSTODIAN_OR_ADMIN,
    A.CREATE_PROJECT: ADMIN,
    A.CHANGE_PROJECT_STATUS: ADMIN,
    A.CLOSE_PROJECT: LEAD_OR_ADMIN,
    A.SET_LIMITS: ADMIN,
    A.SET_SDC_RULES: ADMIN,
    A.PROVISION: CUSTODIAN_OR_ADMIN,
    A.ADD_RESEARCHER: LEAD_OR_ADMIN,
    A.REMOVE_RESEARCHER: LEAD_OR_ADMIN,
    A.ASSIGN_CHECKER: CUSTODIAN_OR_ADMIN,
    A.REMOVE_CHECKER: CUSTODIAN_OR_ADMIN,
    A.REQUEST_GRANT: LEAD_OR_ADMIN,
    A.APPROVE_GRANT: CUSTODIAN_OR_ADMIN,
    A.REJECT_GRANT: CUSTODIAN_OR_ADMIN,
    A.REVOKE_GRANT: CUSTODIAN_OR_ADMIN,
    A.DECIDE_APPLICATION: {"custodian"},  # the data access body decides, not whoever runs the TRE
}


def test_table_covers_every_action():
    assert set(EXPECTED) == set(RegistryAction)


@pytest.mark.parametrize("action", list(RegistryAction))
@pytest.mark.parametrize("role", list(ROLES))
def test_role_action_matrix(role, action):
    # A third party is the target and the requester, on an open project: only the role decides.
    ok = allowed(action, ROLES[role], project=OPEN, target="someone", requested_by="someone", now=NOW)
    assert ok == (role in EXPECTED[action]), f"{role} {action}"


@pytest.mark.parametrize("action", list(RegistryAction))
@pytest.mark.parametrize("role", list(ROLES))
def test_denials_explain_themselves(role, action):
    if role in EXPECTED[action]:
        return
    with pytest.raises(NotAllowed) as info:
        require(action, ROLES[role], project=OPEN, target="someone", requested_by="someone", now=NOW)
    message = str(info.value)
    assert "\n" not in message and ROLES[role].username in message


@pytest.mark.parametrize("action", [A.GRANT_ROLE, A.CREATE_PROJECT, A.ADD_RESEARCHER, A.ASSIGN_CHECKER])
def test_nobody_appoints_themselves(action):
    admin = ROLES["admin"]
    assert allowed(action, admin, project=OPEN, target="someone", now=NOW)
    with pytest.raises(NotAllowed, match="cannot appoint themselves"):
        require(action, admin, project=OPEN, target=admin.username, now=NOW)


def test_lead_cannot_add_themselves_as_researcher():
    lead = ROLES["lead"]
    assert not allowed(A.ADD_RESEARCHER, lead, project=OPEN, target=lead.username, now=NOW)


def test_admin_cannot_disable_themselves():
    admin = ROLES["admin"]
    with pytest.raises(NotAllowed, match="own account"):
        require(A.DISABLE_USER, admin, target=admin.username)


INDEPENDENT = [A.APPROVE_GRANT, A.REJECT_GRANT, A.DECIDE_APPLICATION, A.ASSIGN_CHECKER]


@pytest.mark.parametrize("action", [A.APPROVE_GRANT, A.REJECT_GRANT, A.DECIDE_APPLICATION])
def test_nobody_decides_their_own_request(action):
    actor = RegistryActor("both", is_admin=True, is_custodian=True)
    assert allowed(action, actor, project=OPEN, requested_by="someone", now=NOW)
    with pytest.raises(NotAllowed, match="asked for this"):
        require(action, actor, project=OPEN, requested_by=actor.username, now=NOW)


@pytest.mark.parametrize("action", INDEPENDENT)
@pytest.mark.parametrize("role", ["lead", "researcher", "checker"])
def test_nobody_who_works_on_a_project_decides_its_data_or_appoints_its_checkers(action, role):
    # Every combination: a custodian (and administrator) with any role in the project.
    insider = RegistryActor("in", is_admin=True, is_custodian=True, project_roles=frozenset({role}))
    with pytest.raises(NotAllowed, match=f"works on this project \\({role}\\)"):
        require(action, insider, project=OPEN, target="someone", requested_by="someone", now=NOW)


@pytest.mark.parametrize("action", INDEPENDENT)
def test_a_custodian_named_in_an_application_cannot_decide_it(action):
    custodian = RegistryActor("cus", is_admin=True, is_custodian=True)
    named = frozenset({"cus", "res"})
    with pytest.raises(NotAllowed, match="named as a researcher"):
        require(action, custodian, project=OPEN, target="x", requested_by="someone", named=named, now=NOW)


def test_lead_cannot_appoint_checkers_and_is_told_so():
    with pytest.raises(NotAllowed, match="project leads cannot appoint output checkers"):
        require(A.ASSIGN_CHECKER, ROLES["lead"], project=OPEN, target="someone", now=NOW)


@pytest.mark.parametrize("action", [A.ADD_RESEARCHER, A.ASSIGN_CHECKER, A.REQUEST_GRANT, A.APPROVE_GRANT])
@pytest.mark.parametrize(
    "project",
    [
        ProjectState("study", "suspended", NOW + timedelta(days=30)),
        ProjectState("study", "closed", NOW + timedelta(days=30)),
        ProjectState("study", "active", NOW - timedelta(seconds=1)),
    ],
    ids=["suspended", "closed", "expired"],
)
def test_inactive_projects_take_nothing_new(action, project):
    with pytest.raises(NotAllowed, match=r"suspended|closed|expired"):
        require(action, ROLES["admin"], project=project, target="someone", requested_by="someone", now=NOW)


@pytest.mark.parametrize("action", [A.REMOVE_RESEARCHER, A.REMOVE_CHECKER, A.REVOKE_GRANT, A.REJECT_GRANT])
def test_taking_access_away_works_on_inactive_projects(action):
    closed = ProjectState("study", "closed", NOW + timedelta(days=30))
    assert allowed(action, ROLES["admin"], project=closed, target="someone", requested_by="someone", now=NOW)


@pytest.mark.parametrize(
    "status,delta,expected",
    [
        ("active", 1, True),
        ("active", -1, False),
        ("active", 0, False),
        ("suspended", 1, False),
        ("closed", 1, False),
    ],
)
def test_project_is_open(status, delta, expected):
    assert project_is_open(status, NOW + timedelta(seconds=delta), NOW) is expected


@pytest.mark.parametrize(
    "status,delta,expected",
    [
        ("approved", 1, True),
        ("approved", -1, False),
        ("requested", 1, False),
        ("rejected", 1, False),
        ("revoked", 1, False),
    ],
)
def test_grant_is_active(status, delta, expected):
    assert grant_is_active(status, NOW + timedelta(seconds=delta), NOW) is expected

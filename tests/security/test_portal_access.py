"""Every role against every portal action, over the portal's HTTP interface (in process, with the
caller set by the identity override; the real sign-in: tests/integration/test_portal_hub.py).

Who may do what comes from the registry's rules (hub.registry.permissions), the same ones the `tre`
command line obeys: a refused action changes nothing, and a project the caller does not lead gets
the same answer whether it exists or not.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from hub import registry as reg
from hub.kernel.db import session_scope
from hub.portal.app import create_app
from hub.registry.models import Membership, Project, User
from hub.web.sso import Identity, current_identity
from tests.fixtures_registry import ADMIN, CHECKER, CUSTODIAN, LEAD, RESEARCHER

BASE = "/services/portal"
PROJECT, OTHER = "diab-study", "onco-study"
OTHER_LEAD, NEWCOMER, OUTSIDER = "olga", "nina", "ozzy"
CSRF = "session-csrf"
ROLES = [ADMIN, CUSTODIAN, LEAD, OTHER_LEAD, RESEARCHER, CHECKER, OUTSIDER]


class FakeHub:
    """Stands in for the hub API (no hub runs in these tests): records what the portal asks it to stop."""

    stops: ClassVar[list[tuple[str, str]]] = []

    def __enter__(self) -> FakeHub:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def running(self) -> list:
        return []

    def stop(self, user: str, project: str) -> bool:
        FakeHub.stops.append((user, project))
        return True


@pytest.fixture
def world(registry, make_users, tmp_path, monkeypatch):
    FakeHub.stops = []
    monkeypatch.setattr("hub.portal.projects.HubAPI.for_service", classmethod(lambda cls: FakeHub()))
    make_users(OTHER_LEAD, NEWCOMER, OUTSIDER)
    later = datetime.now(UTC) + timedelta(days=90)
    with session_scope(registry) as s:
        reg.create_project(s, ADMIN, PROJECT, "Diabetes study", LEAD, later)
        reg.create_project(s, ADMIN, OTHER, "Oncology study", OTHER_LEAD, later)
        reg.add_member(s, LEAD, PROJECT, RESEARCHER)
        reg.add_member(s, ADMIN, PROJECT, CHECKER, role="checker")
    app = create_app(registry, sso=False)
    who = {"name": LEAD}
    app.dependency_overrides[current_identity] = lambda: Identity(who["name"], CSRF, "cookie")
    client = TestClient(app, base_url="https://portal--service.tre.localhost", follow_redirects=False)
    return client, who, registry


def members(settings, slug: str) -> set[tuple[str, str]]:
    with session_scope(settings, readonly=True) as s:
        rows = s.execute(
            select(User.username, Membership.role)
            .join(Membership, Membership.user_id == User.id)
            .join(Project, Project.id == Membership.project_id)
            .where(Project.slug == slug)
        )
        return set(rows.all())


ACTIONS = {
    "view": ("GET", f"{BASE}/projects/{PROJECT}", None),
    "add": ("POST", f"{BASE}/projects/{PROJECT}/members", {"username": NEWCOMER}),
    "remove": ("POST", f"{BASE}/projects/{PROJECT}/members/{RESEARCHER}/remove", {}),
    "stop": ("POST", f"{BASE}/projects/{PROJECT}/workspaces/{RESEARCHER}/stop", {}),
}
MAY = {ADMIN, LEAD}  # the project's lead and the administrators; nobody else


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", list(ACTIONS))
def test_only_the_lead_and_administrators_manage_a_project(world, role, action):
    client, who, settings = world
    who["name"] = role
    before = members(settings, PROJECT)
    method, path, form = ACTIONS[action]
    r = client.get(path) if method == "GET" else client.post(path, data={**form, "_csrf": CSRF})
    if role in MAY:
        assert r.status_code in (200, 303), (role, action, r.status_code, r.text[:300])
        assert FakeHub.stops == ([(RESEARCHER, PROJECT)] if action == "stop" else [])
    else:
        assert r.status_code == 404, (role, action, r.status_code)
        assert "There is no project 'diab-study' that you lead" in html.unescape(r.text)
        assert members(settings, PROJECT) == before, "a refused action changed nothing"
        assert FakeHub.stops == [], "and stopped no workspace"


def test_a_project_the_caller_does_not_lead_looks_like_one_that_does_not_exist(world):
    client, who, _ = world
    who["name"] = LEAD
    other = client.get(f"{BASE}/projects/{OTHER}")  # exists, led by someone else
    missing = client.get(f"{BASE}/projects/no-such-project")
    assert other.status_code == missing.status_code == 404
    assert other.text.replace(OTHER, "X") == missing.text.replace("no-such-project", "X")
    for path in (f"{BASE}/projects/{OTHER}/members", f"{BASE}/projects/{OTHER}/members/{RESEARCHER}/remove"):
        r = client.post(path, data={"username": NEWCOMER, "_csrf": CSRF})
        assert r.status_code == 404


def test_the_lead_adds_and_removes_a_researcher_through_the_registry_rules(world):
    client, who, settings = world
    who["name"] = LEAD
    page = client.get(f"{BASE}/projects/{PROJECT}")
    assert page.status_code == 200 and f'data-member="{RESEARCHER}"' in page.text
    added = client.post(f"{BASE}/projects/{PROJECT}/members", data={"username": NEWCOMER, "_csrf": CSRF})
    assert added.status_code == 303
    assert (NEWCOMER, "researcher") in members(settings, PROJECT)
    removed = client.post(f"{BASE}/projects/{PROJECT}/members/{NEWCOMER}/remove", data={"_csrf": CSRF})
    assert removed.status_code == 303
    assert (NEWCOMER, "researcher") not in members(settings, PROJECT)
    with session_scope(settings, readonly=True) as s:
        from hub.kernel.audit import AuditEvent

        actions = [
            (e.actor, e.action, e.details.get("user"))
            for e in s.execute(select(AuditEvent).where(AuditEvent.object_id == PROJECT)).scalars()
        ]
    assert (LEAD, "member.add", NEWCOMER) in actions
    assert (LEAD, "member.remove", NEWCOMER) in actions


@pytest.mark.parametrize(
    ("username", "message"),
    [
        ("no-such-person", "no-such-person"),  # not a registered user
        (RESEARCHER, "already a researcher"),
        ("Bad Name!", "There is no user"),
        ("", "There is no user"),
    ],
)
def test_bad_input_gets_a_clear_message_and_saves_nothing(world, username, message):
    client, who, settings = world
    who["name"] = LEAD
    before = members(settings, PROJECT)
    r = client.post(f"{BASE}/projects/{PROJECT}/members", data={"username": username, "_csrf": CSRF})
    assert r.status_code == 422 and message in html.unescape(r.text), r.text[:500]
    assert 'role="alert"' in r.text
    assert members(settings, PROJECT) == before


def test_cross_site_posts_and_posts_without_the_token_are_refused(world):
    client, who, settings = world
    who["name"] = LEAD
    path = f"{BASE}/projects/{PROJECT}/members/{RESEARCHER}/remove"
    for headers, data in (
        ({"sec-fetch-site": "cross-site"}, {"_csrf": CSRF}),
        ({"origin": "https://alice.tre.localhost"}, {"_csrf": CSRF}),
        ({}, {}),
        ({}, {"_csrf": "guessed"}),
    ):
        r = client.post(path, data=data, headers=headers)
        assert r.status_code == 403, (headers, data, r.status_code)
    assert (RESEARCHER, "researcher") in members(settings, PROJECT)
    # Control: the same post, same-site and with the session's token, removes her.
    assert client.post(path, data={"_csrf": CSRF}).status_code == 303
    assert (RESEARCHER, "researcher") not in members(settings, PROJECT)


def test_when_the_hub_does_not_answer_the_page_says_so_and_nothing_is_stopped(world, monkeypatch):
    from hub.workspaces.hub_api import HubDown

    def down(cls):
        raise HubDown("the hub API does not answer")

    monkeypatch.setattr("hub.portal.projects.HubAPI.for_service", classmethod(down))
    client, who, _ = world
    who["name"] = LEAD
    page = client.get(f"{BASE}/projects/{PROJECT}")
    assert page.status_code == 200 and "whether workspaces are running is not known" in page.text
    r = client.post(f"{BASE}/projects/{PROJECT}/workspaces/{RESEARCHER}/stop", data={"_csrf": CSRF})
    assert r.status_code == 503 and "try again in a minute" in r.text


def project_state(settings, slug: str = PROJECT) -> tuple:
    with session_scope(settings) as s:
        p = s.execute(select(Project).where(Project.slug == slug)).scalar_one()
        checkers = sorted(
            m.user.username
            for m in s.execute(select(Membership).where(Membership.project_id == p.id)).scalars()
            if m.role == "checker"
        )
        return p.status, p.limits, p.sdc_config, checkers


# An administrator's action on a project page, and the one role that may take it.
ADMIN_ACTIONS = {
    "assign checker": ("/checkers", {"username": NEWCOMER}),
    "remove checker": (f"/checkers/{CHECKER}/remove", {}),
    "limits": ("/limits", {"mem": "4g", "daily_bytes": "5000000"}),
    "rules": ("/rules", {"threshold": "15"}),
    "suspend": ("/status", {"change": "suspend", "reason": "DSA review"}),
    "close": ("/status", {"change": "close", "reason": "done"}),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", list(ADMIN_ACTIONS))
def test_only_administrators_administer_a_project(world, role, action):
    client, who, settings = world
    path, data = ADMIN_ACTIONS[action]
    before = project_state(settings)
    who["name"] = role
    r = client.post(f"{BASE}/projects/{PROJECT}{path}", data={"_csrf": CSRF, **data})
    # Checkers may also be assigned by custodians who do not work on the project.
    rightful = (
        {ADMIN} | ({CUSTODIAN} if "checker" in action else set()) | ({LEAD} if action == "close" else set())
    )
    if role in rightful:
        assert r.status_code in (303, 404), (
            role,
            action,
            r.text[:300],
        )  # a custodian cannot see the page after
        assert project_state(settings) != before
    else:
        assert r.status_code in (403, 404, 422), (role, action, r.status_code)
        assert project_state(settings) == before, (role, action)


def test_a_lead_who_is_also_an_administrator_cannot_appoint_her_own_checkers(world):
    client, who, settings = world
    with session_scope(settings) as s:
        reg.set_user_role(s, ADMIN, LEAD, "admin", True)
    before = project_state(settings)
    who["name"] = LEAD
    r = client.post(f"{BASE}/projects/{PROJECT}/checkers", data={"_csrf": CSRF, "username": NEWCOMER})
    assert r.status_code == 422 and "works on this project (lead)" in r.text
    assert project_state(settings) == before


@pytest.mark.parametrize(("role", "status"), [(ADMIN, 200), (CUSTODIAN, 403), (LEAD, 403), (RESEARCHER, 403)])
def test_only_administrators_read_the_audit_log(world, role, status):
    client, who, _ = world
    who["name"] = role
    page = client.get(f"{BASE}/audit", params={"object_id": PROJECT})
    assert page.status_code == status
    if status == 200:
        assert "project.create" in page.text and "member.add" in page.text
    else:
        assert "project.create" not in page.text


@pytest.mark.parametrize("role", [ADMIN, LEAD])
def test_the_project_page_draws_each_form_once_and_none_in_the_head(world, role):
    client, who, _ = world
    who["name"] = role
    page = client.get(f"{BASE}/projects/{PROJECT}").text
    head, body = page.split("</head>", 1)
    assert "<form" not in head
    assert body.count(f'action="{BASE}/projects/{PROJECT}/status"') == 1
    assert body.count('id="administration"') == (1 if role == ADMIN else 0)

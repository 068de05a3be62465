"""Every role x every application action in the portal, over HTTP: each action is tried by everyone,
in the state where it is legitimate, and only its rightful actor changes anything. Plus cross-site
posts, other applications' and permits' ids, and a custodian deciding what they are part of."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from hub import registry as reg
from hub.kernel.db import session_scope
from hub.kernel.signing import PERMITS, Signer
from hub.portal.app import create_app
from hub.registry import applications as apps
from hub.registry.models import Application, Permit
from hub.web.sso import Identity, current_identity
from tests.fixtures_registry import ADMIN, CUSTODIAN, LEAD, RESEARCHER, write_cohort

BASE = "/services/portal"
CSRF = "csrf-secret"
NAMED_CUSTODIAN = "cus-named"  # a custodian the application names as a researcher
OUTSIDER = "outsider"
PDF = b"%PDF-1.4\n%%EOF\n"
ROLES = [LEAD, RESEARCHER, CUSTODIAN, NAMED_CUSTODIAN, ADMIN, OUTSIDER]

FIELDS = {
    "title": "HbA1c",
    "purpose": "art53-1-e",
    "description": "d",
    "benefit": "b",
    "data_form": "pseudonymised",
    "data_form_reason": "r",
    "safeguards": "s",
    "researchers": [RESEARCHER, NAMED_CUSTODIAN],
    "datasets": [
        {
            "dataset": "diabetes",
            "columns": {"patients": ["national_id", "sex"]},
            "justifications": {"patients.national_id": "link", "patients.sex": "strata"},
        }
    ],
}


@pytest.fixture
def world(registry, make_users, tmp_path):
    make_users(OUTSIDER)
    files = write_cohort(tmp_path / "sources", 6)
    with session_scope(registry) as s:
        reg.add_user(s, ADMIN, NAMED_CUSTODIAN, "Named custodian", is_custodian=True)
        reg.register_dataset(
            s, CUSTODIAN, "diabetes", [reg.SourceFile(k, v) for k, v in files.items()], "national_id"
        )
    app = create_app(registry, sso=False)
    who = {"name": LEAD}
    app.dependency_overrides[current_identity] = lambda: Identity(who["name"], CSRF, "cookie")
    client = TestClient(app, base_url="https://portal--service.tre.localhost", follow_redirects=False)
    return client, who, registry


def application_in(settings, state: str, slug: str = "hba1c-study", lead: str = LEAD) -> str:
    """An application by `lead`, brought to `state` through the registry's own operations."""
    ends = datetime.now(UTC) + timedelta(days=100)
    with session_scope(settings) as s:
        a = apps.start_application(s, lead, slug, "t")
        named = [n for n in FIELDS["researchers"] if n != lead]
        apps.update_application(s, lead, a.id, a.revision, {**FIELDS, "researchers": named, "ends_at": ends})
        if state != "draft":
            apps.submit_application(s, lead, a.id, a.revision)
        if state == "questions":
            apps.ask_questions(s, CUSTODIAN, a.id, a.revision, "?")
        if state == "returned":
            apps.return_application(s, CUSTODIAN, a.id, a.revision, "change it")
        if state == "approved":
            decision = apps.DatasetDecision("diabetes", columns={"patients": ["national_id"]})
            apps.approve_application(
                s, CUSTODIAN, a.id, a.revision, [decision], Signer(settings.keys_dir, PERMITS)
            )
        return a.id


def snapshot(settings, application_id: str) -> tuple[str, int]:
    with session_scope(settings, readonly=True) as s:
        a = s.get(Application, application_id)
        return a.status, a.revision


def post(client, path: str, data: dict, files=None):
    return client.post(f"{BASE}{path}", data={"_csrf": CSRF, **data}, files=files)


# action: (state it is legitimate in, who may take it, how to take it)
ACTIONS = {
    "save": (
        "returned",
        {LEAD},
        lambda c, a, rev: post(
            c,
            f"/applications/{a}/edit",
            {"title": "x", "purpose": "art53-1-e", "data_form": "anonymised", "revision": rev},
        ),
    ),
    "upload": (
        "draft",
        {LEAD},
        lambda c, a, rev: post(
            c, f"/applications/{a}/protocol", {"revision": rev}, {"protocol": ("p.pdf", PDF)}
        ),
    ),
    "submit": ("returned", {LEAD}, lambda c, a, rev: post(c, f"/applications/{a}/submit", {"revision": rev})),
    "withdraw": (
        "questions",
        {LEAD},
        lambda c, a, rev: post(c, f"/applications/{a}/withdraw", {"revision": rev}),
    ),
    "answer": (
        "questions",
        {LEAD},
        lambda c, a, rev: post(c, f"/applications/{a}/answer", {"text": "yes", "revision": rev}),
    ),
    "ask": (
        "submitted",
        {CUSTODIAN},
        lambda c, a, rev: post(c, f"/applications/{a}/ask", {"text": "?", "revision": rev}),
    ),
    "return": (
        "submitted",
        {CUSTODIAN},
        lambda c, a, rev: post(c, f"/applications/{a}/return", {"text": "no", "revision": rev}),
    ),
    "reject": (
        "submitted",
        {CUSTODIAN},
        lambda c, a, rev: post(c, f"/applications/{a}/reject", {"text": "no", "revision": rev}),
    ),
    "approve": (
        "submitted",
        {CUSTODIAN},
        lambda c, a, rev: post(
            c,
            f"/applications/{a}/approve",
            {"revision": rev, "approve:diabetes": "1", "col:diabetes:patients:national_id": "1"},
        ),
    ),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", list(ACTIONS))
def test_every_role_every_application_action(world, role, action, monkeypatch):
    monkeypatch.setattr("hub.portal.applications.start_run", lambda *a: 0)  # provisioning: elsewhere
    client, who, settings = world
    state, rightful, take = ACTIONS[action]
    application_id = application_in(settings, state)
    before = snapshot(settings, application_id)
    who["name"] = role
    response = take(client, application_id, before[1])
    if role in rightful:
        assert response.status_code == 303, (role, action, response.text[:500])
        assert snapshot(settings, application_id) != before
    else:
        assert response.status_code in (403, 404), (role, action, response.status_code)
        assert snapshot(settings, application_id) == before, (role, action)


@pytest.mark.parametrize(
    ("role", "status"),
    [(LEAD, 200), (CUSTODIAN, 200), (NAMED_CUSTODIAN, 200), (ADMIN, 200), (RESEARCHER, 404), (OUTSIDER, 404)],
)
def test_who_reads_a_submitted_application(world, role, status):
    client, who, settings = world
    application_id = application_in(settings, "submitted")
    who["name"] = role
    assert client.get(f"{BASE}/applications/{application_id}").status_code == status
    decide = client.get(f"{BASE}/applications/{application_id}/decide").status_code
    assert decide == (200 if role == CUSTODIAN else 403 if status == 200 else 404), role
    queue = client.get(f"{BASE}/queue")
    assert queue.status_code == (200 if role in (CUSTODIAN, NAMED_CUSTODIAN) else 403), role


def test_drafts_and_other_applications_look_like_nothing(world):
    client, who, settings = world
    draft = application_in(settings, "draft")
    mine = application_in(settings, "approved", slug="onc-study", lead=RESEARCHER)
    who["name"] = CUSTODIAN
    assert client.get(f"{BASE}/applications/{draft}").status_code == 404  # the lead's alone until submitted
    who["name"] = LEAD
    for path in (
        f"/applications/{mine}",
        f"/applications/{mine}/edit",
        f"/applications/{mine}/protocol",
        f"/applications/{mine}/provisioning.json",
        "/applications/a-000000000000",
        "/applications/..%2F..%2Fetc",
        "/applications/g-123456789012",
    ):
        r = client.get(f"{BASE}{path}")
        assert r.status_code == 404, (path, r.status_code)
        assert "onc-study" not in r.text
    with session_scope(settings, readonly=True) as s:
        permit_id = s.execute(select(Permit.id)).scalar_one()
    assert client.get(f"{BASE}/permits/{permit_id}.jwt").status_code == 404
    who["name"] = RESEARCHER
    assert client.get(f"{BASE}/permits/{permit_id}.jwt").status_code == 200
    # A new version only for the project's own lead.
    who["name"] = LEAD
    assert post(client, "/projects/onc-study/applications", {}).status_code in (403, 404)


def test_cross_site_and_tokenless_posts_change_nothing(world):
    client, who, settings = world
    application_id = application_in(settings, "submitted")
    before = snapshot(settings, application_id)
    who["name"] = CUSTODIAN
    path = f"{BASE}/applications/{application_id}/reject"
    for headers, data in (
        ({"sec-fetch-site": "cross-site"}, {"_csrf": CSRF}),
        ({"origin": "https://alice.tre.localhost"}, {"_csrf": CSRF}),
        ({}, {}),
        ({}, {"_csrf": "guessed"}),
    ):
        r = client.post(path, data={**data, "text": "no", "revision": before[1]}, headers=headers)
        assert r.status_code == 403, (headers, r.status_code)
    assert snapshot(settings, application_id) == before
    assert client.post(path, data={"_csrf": CSRF, "text": "no", "revision": before[1]}).status_code == 303


def test_a_page_takes_no_message_or_status_from_its_url(world):
    client, who, settings = world
    application_id = application_in(settings, "submitted")
    who["name"] = CUSTODIAN
    page = client.get(
        f"{BASE}/applications/{application_id}/decide", params={"error": "Call 0800 FAKE", "status": "299"}
    )
    assert page.status_code == 200 and "0800 FAKE" not in page.text


@pytest.mark.parametrize("role", ROLES)
def test_who_reads_the_terms_a_project_works_under(world, role):
    """Its members (lead, named researchers) and the custodians and administrators; nobody else,
    who gets the answer a project that does not exist gets."""
    client, who, settings = world
    application_in(settings, "approved")
    with session_scope(settings, readonly=True) as s:
        permit_id = s.execute(select(Permit.id)).scalar_one()
    who["name"] = role
    page = client.get(f"{BASE}/projects/hba1c-study/permit")
    record = client.get(f"{BASE}/permits/{permit_id}.jwt")
    if role == OUTSIDER:
        assert page.status_code == record.status_code == 404
        assert "hba1c" not in record.text and "national_id" not in page.text
        assert (
            page.text.replace("hba1c-study", "no-such-study")
            == client.get(f"{BASE}/projects/no-such-study/permit").text
        )
    else:
        assert page.status_code == record.status_code == 200, role
        assert f"In force: {permit_id}" in page.text
        assert '<code>national_id</code> <span class="muted">(pseudonymised)</span>' in page.text
        assert "Patients who opted out are removed." in page.text
        assert record.text.count(".") == 2  # a JWT: header.claims.signature


def test_a_removed_researcher_no_longer_reads_the_permit(world):
    client, who, settings = world
    application_in(settings, "approved")
    who["name"] = RESEARCHER
    assert client.get(f"{BASE}/projects/hba1c-study/permit").status_code == 200
    with session_scope(settings) as s:
        reg.remove_member(s, LEAD, "hba1c-study", RESEARCHER)
    assert client.get(f"{BASE}/projects/hba1c-study/permit").status_code == 404


def test_a_malformed_project_name_for_a_permit_is_a_plain_404(world):
    client, who, _ = world
    who["name"] = ADMIN
    for slug in ("..%2F..%2Fetc", "Hba1c", "a" * 60):
        assert client.get(f"{BASE}/projects/{slug}/permit").status_code == 404, slug


def _attachment(settings, application_id: str) -> str | None:
    with session_scope(settings, readonly=True) as s:
        return s.get(Application, application_id).attachment_name


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_an_oversized_upload_is_refused_before_it_is_read(world, chunked):
    """20 MiB refused with 413 and a clear message, whether its size is declared or streamed; the
    registry's own 5 MiB rule (422) is never reached, so the body was never parsed or spooled."""
    client, _, settings = world
    application_id = application_in(settings, "draft")
    _, revision = snapshot(settings, application_id)
    boundary = "tre-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="_csrf"\r\n\r\n{CSRF}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="revision"\r\n\r\n{revision}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="protocol"; filename="big.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    ).encode()
    chunks = [head + PDF, *[b"0" * (1024 * 1024)] * 20, f"\r\n--{boundary}--\r\n".encode()]
    body = (c for c in chunks) if chunked else b"".join(chunks)
    r = client.post(
        f"{BASE}/applications/{application_id}/protocol",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 413, r.status_code
    assert "larger than the 6 MiB" in r.text and "at most 5 MiB" in r.text
    assert _attachment(settings, application_id) is None
    # The control: a protocol within the limit is attached.
    ok = post(
        client,
        f"/applications/{application_id}/protocol",
        {"revision": revision},
        {"protocol": ("p.pdf", PDF)},
    )
    assert ok.status_code == 303 and _attachment(settings, application_id) == "p.pdf"

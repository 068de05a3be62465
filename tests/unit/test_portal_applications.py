"""Applications in the portal over HTTP, on a real registry and a real provisioning build: the lead's
form, the custodian's questions and decision, the permit and the progress page. The caller is set by
overriding the identity dependency (sign-in through the hub: tests/integration/test_portal_hub.py)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from hub import registry as reg
from hub.kernel.db import session_scope
from hub.kernel.signing import PERMITS, verify_record
from hub.portal.app import create_app
from hub.provisioning.builder import read_manifest
from hub.registry.models import Application, Grant, Project
from hub.web.sso import Identity, current_identity
from tests.fixtures_registry import (
    CUSTODIAN,
    LEAD,
    RESEARCHER,
    submit_applications,
    write_cohort,
    write_optout,
)

BASE = "/services/portal"
PDF = b"%PDF-1.4\n%%EOF\n"


@pytest.fixture
def portal(registry, make_users, tmp_path):
    make_users()
    files = write_cohort(tmp_path / "sources", 12)
    optout = write_optout(tmp_path / "optout", ["9000000003"])
    with session_scope(registry) as s:
        reg.register_dataset(
            s,
            CUSTODIAN,
            "diabetes",
            [reg.SourceFile(k, v) for k, v in files.items()],
            "national_id",
            title="Diabetes cohort",
        )
        reg.register_dataset(
            s, CUSTODIAN, "optout", [reg.SourceFile("optout", optout)], "national_id", kind="optout"
        )
    app = create_app(registry, sso=False)
    who = {"name": LEAD}
    app.dependency_overrides[current_identity] = lambda: Identity(who["name"], "csrf-secret", "cookie")
    client = TestClient(app, base_url="https://portal--service.tre.localhost")
    client.who = who  # type: ignore[attr-defined]
    client.settings = registry  # type: ignore[attr-defined]
    return client


def post(client, path: str, data: dict | None = None, files=None, origin: bool = True):
    headers = {"origin": "https://portal--service.tre.localhost"} if origin else {}
    return client.post(
        f"{BASE}{path}",
        data={"_csrf": "csrf-secret", **(data or {})},
        files=files,
        headers=headers,
        follow_redirects=False,
    )


def revision(client, application_id: str) -> str:
    with session_scope(client.settings, readonly=True) as s:
        return str(s.get(Application, application_id).revision)


FORM = {
    "title": "HbA1c and outcomes",
    "purpose": "art53-1-e",
    "description": "Does early HbA1c control change outcomes?",
    "benefit": "Better treatment targets.",
    "data_form": "pseudonymised",
    "data_form_reason": "Records must be followed over time.",
    "safeguards": "Analysis only inside the TRE.",
    "ethics_ref": "REC 26/LO/0001",
    "researchers": RESEARCHER,
    "col:diabetes:patients:national_id": "1",
    "why:diabetes:patients.national_id": "linking labs to patients",
    "col:diabetes:patients:sex": "1",
    "why:diabetes:patients.sex": "stratification",
    "col:diabetes:labs:national_id": "1",
    "why:diabetes:labs.national_id": "linking",
    "col:diabetes:labs:hba1c": "1",
}


def start(client, slug: str = "hba1c-study") -> str:
    client.who["name"] = LEAD
    made = post(client, "/applications", {"slug": slug, "title": "HbA1c"})
    assert made.status_code == 303, made.text
    return re.search(r"/applications/(a-[0-9a-f]{12})/edit", made.headers["location"]).group(1)


def test_a_lead_applies_a_custodian_asks_and_approves_and_the_data_are_provisioned(portal):
    app_id = start(portal)
    ends = (datetime.now(UTC) + timedelta(days=200)).strftime("%Y-%m-%d")
    saved = post(
        portal,
        f"/applications/{app_id}/edit",
        {**FORM, "ends_at": ends, "revision": revision(portal, app_id)},
    )
    assert saved.status_code == 303
    form = portal.get(f"{BASE}/applications/{app_id}/edit").text
    assert 'name="col:diabetes:patients:sex" id="col:diabetes:patients:sex" value="1" checked' in form
    uploaded = post(
        portal,
        f"/applications/{app_id}/protocol",
        {"revision": revision(portal, app_id)},
        files={"protocol": ("protocol.pdf", PDF, "application/pdf")},
    )
    assert uploaded.status_code == 303
    submitted = post(portal, f"/applications/{app_id}/submit", {"revision": revision(portal, app_id)})
    assert submitted.status_code == 303

    portal.who["name"] = CUSTODIAN
    assert app_id in portal.get(f"{BASE}/queue").text
    assert portal.get(f"{BASE}/applications/{app_id}/protocol").content == PDF
    asked = post(
        portal, f"/applications/{app_id}/ask", {"text": "Why sex?", "revision": revision(portal, app_id)}
    )
    assert asked.status_code == 303
    portal.who["name"] = LEAD
    answered = post(
        portal,
        f"/applications/{app_id}/answer",
        {"text": "Outcomes differ.", "revision": revision(portal, app_id)},
    )
    assert answered.status_code == 303

    portal.who["name"] = CUSTODIAN
    decide = portal.get(f"{BASE}/applications/{app_id}/decide").text
    assert "quasi-identifier" in decide and "stratification" in decide
    approved = post(
        portal,
        f"/applications/{app_id}/approve",
        {
            "revision": revision(portal, app_id),
            "approve:diabetes": "1",
            "col:diabetes:patients:national_id": "1",
            "col:diabetes:patients:sex": "1",
            "col:diabetes:labs:national_id": "1",  # hba1c left unticked: not approved
            "optout:diabetes": "1",
        },
    )
    assert approved.status_code == 303, approved.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        page = portal.get(f"{BASE}/applications/{app_id}").text
        if 'data-status="published"' in page or 'data-status="failed"' in page:
            break
        assert '<meta http-equiv="refresh"' in page  # the page follows the build by itself
        time.sleep(0.2)
    assert 'data-status="published"' in page, page
    manifest = read_manifest(portal.settings.project_dir("hba1c-study"))
    assert manifest is not None
    with session_scope(portal.settings, readonly=True) as s:
        grant = s.execute(select(Grant).join(Project).where(Project.slug == "hba1c-study")).scalar_one()
        assert grant.columns == {"patients": ["national_id", "sex"], "labs": ["national_id"]}
        permit_id = grant.permit_id
    token = portal.get(f"{BASE}/permits/{permit_id}.jwt").text.strip()
    keyset = portal.get(f"{BASE}/permits/keyset.json").json()
    assert verify_record(token, keyset, PERMITS)["project"] == "hba1c-study"

    portal.who["name"] = LEAD
    project = portal.get(f"{BASE}/projects/hba1c-study").text
    assert permit_id in project and "Workspaces mount release 1" in project
    assert 'data-member="researcher"' in project


def test_bad_input_keeps_what_was_typed_and_saves_nothing(portal):
    app_id = start(portal)
    rev = revision(portal, app_id)
    bad = post(
        portal,
        f"/applications/{app_id}/edit",
        {**FORM, "col:diabetes:patients:shoe_size": "1", "ends_at": "2001-01-01", "revision": rev},
    )
    assert bad.status_code == 422 and "Not saved" in bad.text
    assert "Does early HbA1c control change outcomes?" in bad.text  # what was typed is still there
    assert revision(portal, app_id) == rev
    with session_scope(portal.settings, readonly=True) as s:
        assert s.get(Application, app_id).description == ""
    for name, content, message in [
        ("protocol.pdf", b"GIF89a not a pdf", "must be a PDF"),
        ("big.pdf", PDF + b"0" * (5 * 1024 * 1024), "the limit is"),
    ]:
        refused = post(
            portal, f"/applications/{app_id}/protocol", {"revision": rev}, files={"protocol": (name, content)}
        )
        assert refused.status_code == 422 and message in refused.text
    portal.who["name"] = RESEARCHER  # another lead proposing the same name
    taken = post(portal, "/applications", {"slug": "hba1c-study", "title": "again"})
    assert taken.status_code == 422 and "already taken" in taken.text


def test_a_stale_page_is_refused_with_a_reload_hint(portal):
    app_id = start(portal)
    old = revision(portal, app_id)
    post(portal, f"/applications/{app_id}/edit", {**FORM, "title": "first", "revision": old})
    stale = post(portal, f"/applications/{app_id}/edit", {**FORM, "title": "second", "revision": old})
    assert stale.status_code == 409 and "reload the page" in stale.text
    with session_scope(portal.settings, readonly=True) as s:
        assert s.get(Application, app_id).title == "first"


def test_the_queue_comes_in_pages_of_the_oldest_first(portal):
    datasets = [
        {
            "dataset": "diabetes",
            "columns": {"patients": ["national_id", "sex"]},
            "justifications": {"patients.national_id": "link", "patients.sex": "strata"},
        }
    ]
    ids = submit_applications(portal.settings, LEAD, 27, datasets, first=datetime(2026, 1, 1, tzinfo=UTC))
    portal.who["name"] = CUSTODIAN

    def shown(page: str) -> list[str]:
        return re.findall(r'data-application="(a-[0-9a-f]{12})"', portal.get(f"{BASE}/queue{page}").text)

    first = portal.get(f"{BASE}/queue").text
    assert "27 waiting; showing 1 to 25." in first and 'href="/services/portal/queue?page=2"' in first
    assert shown("") == ids[:25]
    assert shown("?page=2") == ids[25:]
    assert "showing 26 to 27" in portal.get(f"{BASE}/queue?page=2").text
    # A page past the end (the queue shrank since the link was drawn) shows the last one.
    assert shown("?page=9") == ids[25:]
    for bad in ("0", "-1", "x", "1e9", "2" * 30):
        refused = portal.get(f"{BASE}/queue?page={bad}")
        assert refused.status_code == 422 and "not understood" in refused.text, bad

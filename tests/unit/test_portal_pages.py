"""The portal's pages on a real registry, with the caller set by overriding the identity dependency
(the real sign-in through the hub: tests/integration/test_portal_hub.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from hub import registry as reg
from hub.kernel.audit import AuditEvent
from hub.kernel.db import session_scope
from hub.kernel.settings import Settings
from hub.portal.app import create_app
from hub.web.security import FormMe
from hub.web.sso import Identity, current_identity
from tests.fixtures_registry import ADMIN, CUSTODIAN, LEAD, RESEARCHER

BASE = "/services/portal"


@pytest.fixture
def portal(registry, make_users, tmp_path):
    make_users()
    patients = tmp_path / "patients.csv"
    patients.write_text("person_id,date_of_birth,postcode,hba1c\n1,1950-01-02,AB1,48\n2,1970-05-06,CD2,61\n")
    with session_scope(registry) as s:
        reg.register_dataset(
            s,
            CUSTODIAN,
            "diabetes",
            [reg.SourceFile("patients", patients)],
            "person_id",
            title="Diabetes cohort",
        )
        reg.create_project(
            s, ADMIN, "diab-study", "Diabetes study", LEAD, datetime.now(UTC) + timedelta(days=90)
        )
        reg.add_member(s, LEAD, "diab-study", RESEARCHER)
    app = create_app(registry, sso=False)
    who = {"name": RESEARCHER}
    app.dependency_overrides[current_identity] = lambda: Identity(who["name"], "csrf-secret", "cookie")
    client = TestClient(app, base_url="https://portal--service.tre.localhost")
    client.who = who  # type: ignore[attr-defined]
    return client


def test_the_catalogue_lists_datasets_with_counts_and_links(portal):
    page = portal.get(f"{BASE}/catalogue")
    assert page.status_code == 200
    assert "Diabetes cohort" in page.text and f'href="{BASE}/catalogue/diabetes"' in page.text
    assert ">2<" in page.text  # two individuals
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_a_dataset_page_shows_each_column_with_its_sensitivity(portal):
    page = portal.get(f"{BASE}/catalogue/diabetes")
    assert page.status_code == 200
    text = page.text
    for column, label in (("person_id", "identifier"), ("postcode", "quasi-identifier"), ("hba1c", "other")):
        assert f"<code>{column}</code>" in text
        assert (
            f'class="badge sens-{label}">{label}</span>' in text.split(f"<code>{column}</code>", 1)[1][:400]
        )
    assert "Electronic health records" in text and ">EHRS<" in text  # its EHDS Art. 51 category
    assert "Typical age" in text  # from the birth date column, never the dates themselves
    assert "1950-01-02" not in text and "AB1" not in text  # no record ever reaches the page


def test_unknown_and_malformed_dataset_names_get_a_clear_404(portal):
    for name in ("nope", "..%2F..%2Fetc", "Diabetes", "a" * 60):
        page = portal.get(f"{BASE}/catalogue/{name}")
        assert page.status_code == 404, name
        assert "Back to the portal" in page.text and (
            "There is no dataset" in page.text or "no such page" in page.text
        )


def test_the_healthdcat_export_is_one_click_away_and_carries_no_records(portal):
    page = portal.get(f"{BASE}/catalogue")
    assert f'href="{BASE}/catalogue.jsonld" download' in page.text
    export = portal.get(f"{BASE}/catalogue.jsonld")
    assert export.headers["content-type"].startswith("application/ld+json")
    doc = json.loads(export.text)
    [node] = doc["dcat:dataset"]
    assert node["dct:title"] == "Diabetes cohort"
    assert node["healthdcatap:numberOfUniqueIndividuals"]["@value"] == "2"
    assert "AB1" not in export.text


def test_home_shows_the_persons_own_projects_and_the_way_to_everything_else(portal):
    page = portal.get(f"{BASE}/")
    assert "Diabetes study" in page.text and "researcher" in page.text
    assert "https://tre.localhost/hub/home" in page.text  # back to the workspaces
    assert "egress--service.tre.localhost" in page.text  # on to output checking
    assert "Every project" not in page.text  # only administrators see every project
    portal.who["name"] = CUSTODIAN
    page = portal.get(f"{BASE}/")
    assert "not a member of any open project" in page.text and "data custodian" in page.text
    portal.who["name"] = ADMIN
    page = portal.get(f"{BASE}/")
    assert "Every project" in page.text and f'href="{BASE}/projects/diab-study"' in page.text


def _probe(me: FormMe) -> dict:
    return {"ok": me.username}


def test_a_post_without_a_valid_csrf_token_is_refused_and_audited(portal, registry):
    # The portal's forms come with the application flow; the rule they will use is checked here.
    portal.app.add_api_route(f"{BASE}/probe", _probe, methods=["POST"])
    cross = portal.post(
        f"{BASE}/probe", data={"_csrf": "csrf-secret"}, headers={"sec-fetch-site": "cross-site"}
    )
    assert cross.status_code == 403
    wrong = portal.post(f"{BASE}/probe", data={"_csrf": "guess"})
    assert wrong.status_code == 403
    ok = portal.post(f"{BASE}/probe", data={"_csrf": "csrf-secret"})
    assert ok.status_code == 200  # control: the same post with the session's token goes through
    with session_scope(registry) as s:
        refused = s.query(AuditEvent).filter(AuditEvent.action == "portal.refused.csrf").all()
    assert [e.details["reason"] for e in refused] == ["cross-site form post", "missing or wrong CSRF token"]


def test_a_dataset_page_shows_the_latest_version(portal, registry, tmp_path):
    patients = tmp_path / "patients-v2.csv"
    patients.write_text(
        "person_id,date_of_birth,postcode,hba1c\n1,1950-01-02,AB1,48\n2,1970-05-06,CD2,61\n3,1980-01-01,EF3,55\n"
    )
    with session_scope(registry) as s:
        reg.register_dataset(s, CUSTODIAN, "diabetes", [reg.SourceFile("patients", patients)], "person_id")
    page = portal.get(f"{BASE}/catalogue/diabetes")
    assert "version 2" in page.text and ">3</dd>" in page.text  # three individuals now


def test_the_served_portal_compiles_every_template_before_its_first_request(registry, monkeypatch):
    """The first visitors of a new process do not wait for compiling; a broken template stops the
    service at start, not a visitor at the page."""
    import gc

    import jinja2

    from hub.portal.app import service_app
    from hub.web.serving import prepare_to_serve

    monkeypatch.setattr("hub.portal.app.get_settings", lambda: registry)
    monkeypatch.setattr("hub.portal.app.die_with_parent", lambda: None)
    env = service_app().state.templates.env
    gc.unfreeze()  # what service_app froze is this test process's, not a served one's
    cached = {name for _, name in env.cache}
    assert cached >= set(env.list_templates(extensions=["html"])) >= {"base.html", "queue.html"}

    broken = create_app(registry, sso=False)
    broken.state.templates.env.loader = jinja2.DictLoader({"page.html": "{% if %}"})
    with pytest.raises(jinja2.TemplateSyntaxError):
        prepare_to_serve(broken, broken.state.templates, registry)


def served_process(registry: Settings, before: str, after: str) -> list[str]:
    """What a fresh process prints: it builds the portal, runs `before`, prepares to serve as a
    served process does, then runs `after` (each a line of Python). Fresh, because this test
    process has long set up what a new one has not."""
    check = (
        "import gc\n"
        "from hub.kernel.settings import get_settings\n"
        "from hub.portal.app import create_app\n"
        "from hub.web.serving import prepare_to_serve\n"
        "app = create_app(get_settings(), sso=False)\n"
        f"{before}\n"
        "prepare_to_serve(app, app.state.templates, get_settings())\n"
        f"{after}\n"
    )
    env = {**os.environ, "TRE_ROOT": str(registry.root)}
    return subprocess.run(
        [sys.executable, "-c", check], env=env, capture_output=True, text=True, check=True
    ).stdout.split()


def test_a_served_process_sets_up_the_orm_before_its_first_request(registry):
    """Its first visitors would otherwise pay for it (0.1 s, under load)."""
    mapped = "inspect(Application).configured"
    imports = "from sqlalchemy import inspect\nfrom hub.registry.models import Application\n"
    assert served_process(registry, f"{imports}before = {mapped}", f"print(before, {mapped})") == [
        "False",
        "True",
    ]


def test_a_served_process_keeps_what_it_built_at_start_out_of_the_garbage_collectors_sight(registry):
    """Each full collection walked every module, model and template (105 to 157 ms per collection
    under load, every page waiting)."""
    seen = "any(o is app for o in gc.get_objects())"
    out = served_process(
        registry, f"before = {seen}", f"print(before, {seen}, gc.get_freeze_count() > 100_000)"
    )
    assert out == ["True", "False", "True"]


def test_a_served_process_sets_up_every_route_before_its_first_request(registry):
    """FastAPI sets up an included router's routes (dependencies, form models) when the first
    request reaches that router: 15 ms of a new worker's first page."""
    count_route_setups = (
        "import fastapi.routing as routing; calls = []; setup = routing._populate_api_route_state; "
        "routing._populate_api_route_state = lambda *a, **k: calls.append(a) or setup(*a, **k)"
    )
    first_page = (
        "from fastapi.testclient import TestClient; "
        "print(TestClient(app, follow_redirects=False).get('/services/portal/queue').status_code, len(calls))"
    )
    status, routes_set_up = served_process(registry, "pass", count_route_setups + "\n" + first_page)
    assert status != "404" and routes_set_up == "0", (status, routes_set_up)

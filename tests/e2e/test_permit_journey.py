"""From application to permit in Chromium, on a hub of its own: a lead applies; a custodian asks a
question and the lead answers; the custodian approves two datasets with different columns;
provisioning reaches "published"; the lead adds a researcher, whose workspace sees exactly the
approved columns and who reads the permit's terms in the portal; the lead removes her and the
workspace stops; the permit verifies offline with `tre permit verify`. Screenshots go to
artifacts/e2e/ (the guides' pictures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fixtures_browser import ARTIFACTS, goto, sign_in
from tests.fixtures_hub import PASSWORD, docker_exec, hub_of_its_own
from tests.fixtures_registry import CUSTODIAN, LEAD, write_optout

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.e2e]

SLUG = "hba1c-outcomes"
NEWCOMER = "rhea"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"
# What the lead asks for, and (ticked off on the decision page) what the custodian leaves out.
ASKED = {
    "diabetes": {"patients": ["national_id", "sex", "postcode"], "labs": ["national_id", "hba1c"]},
    "diabetes-labs": {"labs": ["national_id", "hba1c", "atc_code"]},
}
LEFT_OUT = {("diabetes", "patients", "postcode"), ("diabetes-labs", "labs", "atc_code")}
# Columns the workspace must see, per released table (identifiers pseudonymised under their name).
SEEN = {
    "diabetes/patients": ["national_id", "sex"],
    "diabetes/labs": ["national_id", "hba1c"],
    "diabetes-labs/labs": ["national_id", "hba1c"],
}


@pytest.fixture(scope="module")
def permit_hub(tmp_path_factory, hub_image):
    yield from hub_of_its_own(tmp_path_factory, hub_image, "permits")


@pytest.fixture(scope="module")
def hub(permit_hub):
    from hub import registry as reg
    from hub.kernel.db import session_scope
    from hub.workspaces.login import create_login
    from tests.fixtures_registry import ADMIN

    settings = permit_hub.settings
    sources = settings.root / "sources"
    optout = write_optout(settings.root / "optout", ["9000000002"])
    with session_scope(settings) as s:
        reg.register_dataset(
            s,
            CUSTODIAN,
            "diabetes-labs",
            [
                reg.SourceFile("patients", sources / "patients.csv"),
                reg.SourceFile("labs", sources / "labs.csv"),
            ],
            "national_id",
            title="Diabetes laboratory extract",
        )
        reg.register_dataset(
            s, CUSTODIAN, "optout", [reg.SourceFile("optout", optout)], "national_id", kind="optout"
        )
        reg.add_user(s, ADMIN, NEWCOMER, "Rhea Researcher")
    for name in (CUSTODIAN, NEWCOMER):
        permit_hub.totp[name] = create_login(name, PASSWORD, settings)
    return permit_hub


def _portal(hub) -> str:
    return hub.settings.service_url("portal")


def _apply(page, hub) -> str:
    goto(page, f"{_portal(hub)}applications")
    page.get_by_label("Project name").fill(SLUG)
    page.get_by_label("Title").fill("HbA1c and outcomes")
    page.get_by_role("button", name="Start the application").click()
    page.wait_for_url("**/edit")
    application_id = page.url.split("/applications/")[1].split("/")[0]
    page.get_by_label("Purpose").select_option("art53-1-e")
    page.get_by_label("Description of the project").fill("Does early HbA1c control change outcomes?")
    page.get_by_label("Expected benefit").fill("Better treatment targets for type 2 diabetes.")
    page.get_by_label("pseudonymised").check()
    page.get_by_label("Why this form").fill("Patients are followed over several laboratory results.")
    page.get_by_label("End of the period").fill(
        (datetime.now(UTC) + timedelta(days=180)).strftime("%Y-%m-%d")
    )
    page.get_by_label("Safeguards").fill("Analysis only inside the TRE; outputs checked by two checkers.")
    page.get_by_label("Ethics approval reference").fill("REC 26/LO/0042")
    for dataset, tables in ASKED.items():
        for table, columns in tables.items():
            for column in columns:
                page.locator(f'input[name="col:{dataset}:{table}:{column}"]').check()
                why = page.locator(f'input[name="why:{dataset}:{table}.{column}"]')
                if why.count():
                    why.fill(f"needed for {column}")
    page.get_by_role("button", name="Save draft").click()
    page.wait_for_url("**/edit#saved")
    page.get_by_label("A PDF of at most 5 MiB").set_input_files(
        {"name": "protocol.pdf", "mimeType": "application/pdf", "buffer": PDF}
    )
    page.get_by_role("button", name="Upload").click()
    page.wait_for_url("**/edit#protocol")
    page.get_by_role("link", name="protocol.pdf").wait_for()
    page.screenshot(path=str(ARTIFACTS / "portal-application.png"), full_page=True)
    page.get_by_role("button", name="Save and submit").click()
    page.wait_for_url(f"**/applications/{application_id}")
    assert page.locator("#status").inner_text() == "submitted"
    return application_id


def _columns_in_workspace(container: str) -> dict[str, list[str]]:
    script = (
        "import duckdb, glob, json, os\n"
        "out = {}\n"
        "for f in sorted(glob.glob('/data/**/*.parquet', recursive=True)):\n"
        "    key = os.path.relpath(f, '/data').removeprefix('data/').removesuffix('.parquet')\n"
        "    rows = duckdb.sql(f\"DESCRIBE SELECT * FROM read_parquet('{f}')\").fetchall()\n"
        "    out[key] = [r[0] for r in rows]\n"
        "print(json.dumps(out))\n"
    )
    result = docker_exec(container, "python3", "-c", script, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_from_application_to_permit_to_workspace(browser, hub, tmp_path):
    lead_context, lead = sign_in(browser, hub, LEAD)
    custodian_context, custodian = sign_in(browser, hub, CUSTODIAN)
    try:
        application_id = _apply(lead, hub)

        # The custodian's queue, oldest first: she asks a question.
        goto(custodian, f"{_portal(hub)}queue")
        custodian.locator(f'tr[data-application="{application_id}"]').get_by_role("link").click()
        custodian.get_by_label("Ask the lead a question").fill("Why is the postcode needed?")
        custodian.get_by_role("button", name="Ask", exact=True).click()
        custodian.locator("#status", has_text="questions").wait_for()

        # The lead answers on the application's page.
        lead.reload()
        lead.get_by_text("Why is the postcode needed?").wait_for()
        lead.get_by_label("Your answer").fill("To adjust for deprivation; a district would do.")
        lead.get_by_role("button", name="Send the answer").click()
        lead.locator("#status", has_text="submitted").wait_for()

        # The custodian approves both datasets, each with fewer columns than asked.
        custodian.reload()
        custodian.get_by_text("a district would do").wait_for()
        custodian.get_by_role("link", name="Approve, dataset by dataset…").click()
        for dataset, table, column in LEFT_OUT:
            custodian.locator(f'input[name="col:{dataset}:{table}:{column}"]').uncheck()
        custodian.locator('textarea[name="conditions:diabetes"]').fill("No linkage to other sources.")
        custodian.screenshot(path=str(ARTIFACTS / "portal-decide.png"), full_page=True)
        custodian.get_by_role("button", name="Approve and issue the data permit").click()
        custodian.wait_for_url(f"**/applications/{application_id}#provisioning")
        custodian.locator('#provisioning-status[data-status="published"]').wait_for(timeout=120_000)

        lead.reload()
        lead.locator('#provisioning-status[data-status="published"]').wait_for()
        lead.screenshot(path=str(ARTIFACTS / "portal-permit.png"), full_page=True)
        with lead.expect_download() as download:
            lead.get_by_role("link", name="Download the signed permit").click()
        download.value.save_as(tmp_path / "permit.jwt")
        goto(lead, f"{_portal(hub)}permits/keyset.json")
        (tmp_path / "keyset.json").write_text(lead.locator("body").inner_text())
        goto(lead, f"{_portal(hub)}applications/{application_id}")

        # The lead adds a researcher; her workspace sees exactly the approved columns.
        lead.get_by_role("link", name="Manage the project: members and workspaces").click()
        lead.get_by_label("Username").fill(NEWCOMER)
        lead.get_by_role("button", name="Add").click()
        lead.locator(f'tr[data-member="{NEWCOMER}"]').wait_for()
        hub.start(NEWCOMER, SLUG)
        assert _columns_in_workspace(hub.container(NEWCOMER, SLUG)) == SEEN

        # She reads the terms she works under in the portal: the approved columns, no others.
        newcomer_context, newcomer = sign_in(browser, hub, NEWCOMER)
        try:
            goto(newcomer, _portal(hub))
            newcomer.get_by_role("link", name="Its data permit").click()
            terms = newcomer.locator("#in-force")
            terms.get_by_text("No linkage to other sources.").wait_for()
            for dataset, _table, column in LEFT_OUT:
                section = terms.locator(f'section[data-dataset^="{dataset}:"]')
                assert f"<code>{column}</code>" not in section.inner_html()
            assert (
                "<code>hba1c</code>" in terms.locator('section[data-dataset^="diabetes-labs:"]').inner_html()
            )
            newcomer.screenshot(path=str(ARTIFACTS / "portal-researcher-permit.png"), full_page=True)
        finally:
            newcomer_context.close()

        # The lead removes her: the workspace stops.
        lead.reload()
        row = lead.locator(f'tr[data-member="{NEWCOMER}"]')
        row.get_by_text("running since").wait_for()
        row.get_by_role("button", name="Remove from project").click()
        lead.wait_for_url(f"**/projects/{SLUG}")
        for _ in range(60):
            if hub.server(NEWCOMER, SLUG) is None:
                break
            lead.wait_for_timeout(500)
        assert hub.server(NEWCOMER, SLUG) is None
        assert lead.locator(f'tr[data-member="{NEWCOMER}"]').count() == 0
    finally:
        lead_context.close()
        custodian_context.close()

    # Offline: a fresh TRE root that knows nothing but the published keyset.
    offline = tmp_path / "offline"
    offline.mkdir()
    verified = subprocess.run(
        [
            str(Path(sys.executable).with_name("tre")),
            "permit",
            "verify",
            str(tmp_path / "permit.jwt"),
            "--keyset",
            str(tmp_path / "keyset.json"),
            "--json",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TRE_ROOT": str(offline)},
        timeout=60,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    claims = json.loads(verified.stdout)
    assert claims["project"] == SLUG and claims["holder"] == LEAD and claims["issued_by"] == CUSTODIAN
    approved = {d["dataset"].split(":")[0]: d["columns"] for d in claims["datasets"]}
    assert approved == {
        "diabetes": {"patients": ["national_id", "sex"], "labs": ["national_id", "hba1c"]},
        "diabetes-labs": {"labs": ["national_id", "hba1c"]},
    }

"""The portal in Chromium: a lead goes from the hub's home page to the portal (OAuth, no second
password), browses the catalogue, and manages a member's workspace on the project page.
Screenshots go to artifacts/e2e/ (the guides' pictures are taken from there)."""

from __future__ import annotations

import pytest

from tests.fixtures_browser import ARTIFACTS, goto, sign_in
from tests.fixtures_hub import own_workspace
from tests.fixtures_registry import LEAD

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_a_lead_walks_from_the_hub_to_the_portal_and_stops_a_workspace(browser, tre_hub):
    user, project, _ = own_workspace(tre_hub, "portal-e2e")
    context, page = sign_in(browser, tre_hub, LEAD)
    try:
        page.get_by_role("link", name="Portal").first.click()  # the hub's navigation
        page.wait_for_url(f"{tre_hub.settings.service_url('portal')}")
        page.get_by_role("heading", name=f"Welcome, {LEAD}").wait_for()
        page.get_by_role("link", name="Dataset catalogue").first.click()
        page.get_by_role("link", name="diabetes").first.click()
        page.locator("code", has_text="national_id").first.wait_for()
        assert page.locator(".sens-identifier").count() >= 1
        page.screenshot(path=str(ARTIFACTS / "portal-dataset.png"), full_page=True)

        goto(page, f"{tre_hub.settings.service_url('portal')}projects/{project}")
        row = page.locator(f'tr[data-member="{user}"]')
        row.get_by_text("running since").wait_for()
        page.screenshot(path=str(ARTIFACTS / "portal-project.png"), full_page=True)
        row.get_by_role("button", name="Stop workspace").click()
        page.wait_for_url(f"**/projects/{project}")
        for _ in range(60):
            if tre_hub.server(user, project) is None:
                break
            page.wait_for_timeout(500)
        assert tre_hub.server(user, project) is None
        page.reload()
        page.locator(f'tr[data-member="{user}"]').get_by_text("not running").wait_for()
    finally:
        context.close()

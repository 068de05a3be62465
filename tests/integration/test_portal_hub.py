"""The portal on the real TRE hub: a JupyterHub service on an origin of its own, signed in to with the
hub's password + TOTP and OAuth (PKCE), reached through the proxy with the site's certificate."""

from __future__ import annotations

import time

import pytest

from tests.fixtures_hub import docker_exec, service_login

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_a_researcher_signs_in_and_browses_the_catalogue(tre_hub):
    browser = service_login(tre_hub, "alice", "portal", "catalogue")
    portal = tre_hub.settings.service_url("portal")
    page = browser.get(f"{portal}catalogue")
    assert page.status_code == 200 and 'href="/services/portal/catalogue/diabetes"' in page.text
    dataset = browser.get(f"{portal}catalogue/diabetes")
    assert "<code>national_id</code>" in dataset.text and "sens-identifier" in dataset.text
    home = browser.get(portal)
    assert "Project proj-a" in home.text  # her own projects, from the registry
    assert "Project proj-b" not in home.text  # not bob's
    # The hub's pages lead here, and the portal leads back: nobody has to guess an address.
    hub_home = browser.get(f"{tre_hub.url}/hub/home")
    assert portal in hub_home.text
    assert f"{tre_hub.url}/hub/home" in home.text and tre_hub.egress_url in home.text


def test_the_portal_lives_on_its_own_origin_and_trusts_only_its_own_sessions(tre_hub, running):
    portal = tre_hub.settings.service_url("portal")
    assert portal.startswith("https://portal--service.")
    anonymous = tre_hub.client(follow_redirects=False).get(f"{portal}catalogue")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["location"]
    # A workspace's own server token names alice but was never meant for the portal.
    token = docker_exec(running["alice"], "sh", "-c", "echo $JUPYTERHUB_API_TOKEN").stdout.strip()
    assert token
    refused = tre_hub.client(follow_redirects=False).get(
        f"{portal}catalogue", headers={"Authorization": f"token {token}"}
    )
    assert refused.status_code in (302, 401, 403)
    assert "national_id" not in refused.text
    # An egress session does not open the portal: each service's session is its own.
    egress = service_login(tre_hub, "bob", "egress", "requests")
    crossed = egress.get(f"{portal}catalogue", follow_redirects=False)
    assert crossed.status_code == 302 and "/login" in crossed.headers["location"]


def test_a_lead_sees_stops_and_removes_a_members_workspace_at_once(tre_hub):
    import re

    from tests.fixtures_hub import own_workspace
    from tests.fixtures_registry import LEAD

    user, project, _ = own_workspace(tre_hub, "portal-lead")  # running, led by LEAD
    portal = tre_hub.settings.service_url("portal")
    browser = service_login(tre_hub, LEAD, "portal", f"projects/{project}")
    page = browser.get(f"{portal}projects/{project}")
    row = page.text.split(f'data-member="{user}"', 1)[1].split("</tr>", 1)[0]
    assert "running since" in row and "release 1" in row, row  # from the hub and the container's label
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)

    stopped = browser.post(f"{portal}projects/{project}/workspaces/{user}/stop", data={"_csrf": csrf})
    assert stopped.status_code == 200 and str(stopped.url) == f"{portal}projects/{project}"
    deadline = time.monotonic() + 60
    while tre_hub.server(user, project) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert tre_hub.server(user, project) is None
    assert (LEAD, {"user": user, "reason": "stopped by the project lead", "trigger": "portal"}) in (
        tre_hub.audit_events("workspace.stop", project)
    )

    tre_hub.start(user, project)
    removed = browser.post(f"{portal}projects/{project}/members/{user}/remove", data={"_csrf": csrf})
    assert removed.status_code == 200 and f'data-member="{user}"' not in removed.text
    assert tre_hub.server(user, project) is None, "removing her stops her workspace at once"
    assert tre_hub.request_start(user, project).status_code == 403  # and she cannot start it again

    added = browser.post(f"{portal}projects/{project}/members", data={"username": user, "_csrf": csrf})
    assert f'data-member="{user}"' in added.text
    tre_hub.start(user, project)  # control: back in the project, she works again
    tre_hub.stop(user, project)

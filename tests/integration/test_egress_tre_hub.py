"""The egress service behind the real TRE hub: password + TOTP login, then OAuth (PKCE) into egress.

Uses the shared `tre_hub` fixture (tests/fixtures_hub.py), so it runs the production hub
configuration: the egress service must be registered as `egress` and users must hold
`access:services!service=egress` (see docs/development.md, "Egress service wiring").
"""

from __future__ import annotations

import re

import httpx
import pytest

from tests.fixtures_hub import PASSWORD

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def tre_login(hub, user: str) -> httpx.Client:
    browser = hub.client(follow_redirects=True)
    page = browser.get(f"{hub.egress_url}requests")
    assert "/hub/login" in str(page.url), f"egress did not send us to the hub login: {page.url}"
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
    code = hub.code(user)
    page = browser.post(
        str(page.url), data={"username": user, "password": PASSWORD, "otp": code, "_xsrf": xsrf}
    )
    assert page.status_code != 403 or "permission to access" not in page.text, (
        "the hub refused OAuth to egress: grant users access:services!service=egress in load_roles"
    )
    assert page.status_code == 200, f"{page.status_code} {page.url}\n{hub.tail()}"
    assert str(page.url) == f"{hub.egress_url}requests"
    # The egress session lives on the egress origin only, bound to it (__Host-) and sent over TLS only.
    session = next(c for c in browser.cookies.jar if c.name.endswith("egress-session"))
    assert session.name.startswith("__Host-") and session.secure
    assert session.domain == hub.egress_url.split("//")[1].split(":")[0]
    return browser


def test_researcher_signs_in_and_sees_only_their_projects(tre_hub):
    alice = tre_login(tre_hub, "alice")
    page = alice.get(f"{tre_hub.egress_url}requests")
    assert "alice ·" in page.text
    projects = re.findall(r"<option>([a-z0-9-]+)</option>", page.text)
    assert "proj-a" in projects and "proj-b" not in projects
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)
    egress_origin = tre_hub.egress_url.split("/services/")[0]
    r = alice.post(
        f"{tre_hub.egress_url}requests",
        data={"_csrf": csrf, "project": "proj-a", "title": "through the TRE hub"},
        headers={"Origin": egress_origin},
    )
    assert r.status_code == 200 and "through the TRE hub" in r.text
    rid = str(r.url).rsplit("/", 1)[1]

    bob = tre_login(tre_hub, "bob")
    assert bob.get(f"{tre_hub.egress_url}requests/{rid}").status_code == 403
    assert tre_hub.audit_events("egress.refused.view", rid)

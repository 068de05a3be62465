"""The egress service behind the real TRE hub: password + TOTP login, then OAuth (PKCE) into egress.

Uses the shared `tre_hub` fixture (tests/fixtures_hub.py), so it runs the production hub
configuration: the egress service must be registered as `egress` and users must hold
`access:services!service=egress` (see docs/development.md, "Egress service wiring").
"""

from __future__ import annotations

import re

import pytest

from tests.fixtures_hub import egress_login

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_researcher_signs_in_and_sees_only_their_projects(tre_hub):
    alice = egress_login(tre_hub, "alice")
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

    bob = egress_login(tre_hub, "bob")
    assert bob.get(f"{tre_hub.egress_url}requests/{rid}").status_code == 403
    assert tre_hub.audit_events("egress.refused.view", rid)

"""TLS on the public proxy: only https with the site's certificate; plain http only redirects; HSTS
on every origin (the hub says includeSubDomains); a client that does not trust the CA gets nothing.
(Chromium trusting the test CA signs in throughout tests/e2e and tests/security/test_origins.py.)"""

from __future__ import annotations

import re
import ssl

import httpx
import pytest

from tests.fixtures_hub import PASSWORD

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_a_verifying_client_signs_in_over_tls_and_an_untrusting_one_gets_nothing(tre_hub):
    with tre_hub.client(base_url=tre_hub.url) as c:  # verifies the chain and every name against the CA
        page = c.get("/hub/login")
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
        r = c.post(
            "/hub/login",
            data={"username": "bob", "password": PASSWORD, "otp": tre_hub.code("bob"), "_xsrf": xsrf},
        )
        assert r.status_code == 302, r.text
        assert c.get("/hub/api/user").json()["name"] == "bob"
    # Control: the same address without trusting the TRE's CA is refused by TLS itself.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(
            f"https://127.0.0.1:{tre_hub.settings.public_port}/hub/login", verify=ssl.create_default_context()
        )


def test_plain_http_only_redirects_to_https(tre_hub):
    s = tre_hub.settings
    for path in ("/hub/login", "/user/bob/proj-b/lab", "/services/egress/requests"):
        r = httpx.get(
            f"http://127.0.0.1:{s.http_port}{path}", headers={"Host": s.domain}, follow_redirects=False
        )
        assert r.status_code in (301, 302, 307, 308), (path, r.status_code)
        assert r.headers["location"].startswith("https://"), r.headers["location"]
        assert "_xsrf" not in r.text and "password" not in r.text.lower()


def test_hsts_on_the_hub_and_the_egress_service(tre_hub):
    with tre_hub.client() as c:
        hub = c.get(f"{tre_hub.url}/hub/login")
        egress = c.get(f"{tre_hub.egress_url}login", follow_redirects=False)
    assert "includesubdomains" in hub.headers["strict-transport-security"].lower()
    assert int(re.search(r"max-age=(\d+)", hub.headers["strict-transport-security"]).group(1)) >= 31536000
    assert "max-age=" in egress.headers["strict-transport-security"]

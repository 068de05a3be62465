"""Sign in to the egress service through a real JupyterHub: OAuth authorization code with PKCE.

A small JupyterHub (DummyAuthenticator: fine for a test of the OAuth handshake, never for a TRE)
runs the egress service as a managed service exactly as the TRE hub does (`python -m egress` at
/services/egress/, users granted `access:services!service=egress`). The browser is an httpx client
that follows redirects and keeps cookies. The TRE hub's own login (password + TOTP) is covered by
the hub's tests; what matters here is that the service trusts nothing but the hub.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from tests.egress_server import REPO, free_port
from tests.fixtures_egress import AUTHOR, CHECKER1, PROJECT
from tests.fixtures_hub import end_process

pytestmark = pytest.mark.slow
CHP = REPO / ".node" / "node_modules" / ".bin" / "configurable-http-proxy"
ADMIN_TOKEN = secrets.token_hex(16)

CONFIG = """
import sys
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{root}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{root}/cookie_secret"
c.JupyterHub.pid_file = "{root}/jupyterhub.pid"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = ["{chp}"]
c.ConfigurableHTTPProxy.pid_file = "{root}/proxy.pid"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = "test-password"
c.Authenticator.allow_all = True
c.JupyterHub.services = [
    {{"name": "egress", "url": "http://127.0.0.1:{egress_port}", "command": [sys.executable, "-m", "egress"],
      "environment": {{"TRE_ROOT": "{tre_root}"}}, "oauth_no_confirm": True}},
    {{"name": "test-admin", "api_token": "{admin_token}"}},
]
c.JupyterHub.load_roles = [
    {{"name": "user", "scopes": ["self", "access:services!service=egress"]}},
    {{"name": "test-admin", "scopes": ["admin:users", "tokens"], "services": ["test-admin"]}},
]
"""


@pytest.fixture
def hub(eg, tmp_path):
    if not CHP.exists() and shutil.which("configurable-http-proxy") is None:
        pytest.skip("configurable-http-proxy missing: run `make proxy`")
    root = tmp_path / "jhub"
    root.mkdir()
    port = free_port()
    config = root / "jupyterhub_config.py"
    config.write_text(
        CONFIG.format(
            port=port,
            hub_port=free_port(),
            proxy_api_port=free_port(),
            egress_port=free_port(),
            root=root,
            chp=CHP if CHP.exists() else shutil.which("configurable-http-proxy"),
            tre_root=eg.settings.root,
            admin_token=ADMIN_TOKEN,
        )
    )
    log = open(root / "hub.log", "wb")  # noqa: SIM115 - closed in the teardown below
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", str(config)],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/services/egress/api/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("hub or egress did not start:\n" + (root / "hub.log").read_text()[-3000:])
            time.sleep(0.3)
        yield url
    finally:
        end_process(proc, timeout=30)
        log.close()


def login(url: str, user: str) -> tuple[httpx.Client, list[str]]:
    """A browser: open an egress page, get sent through the hub login, come back signed in."""
    browser = httpx.Client(follow_redirects=True, timeout=30)
    hops: list[str] = []
    browser.event_hooks["request"] = [lambda r: hops.append(str(r.url))]
    page = browser.get(f"{url}/services/egress/requests")
    assert "/hub/login" in str(page.url)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
    page = browser.post(str(page.url), data={"username": user, "password": "test-password", "_xsrf": xsrf})
    assert page.status_code == 200, page.text[:500]
    assert str(page.url) == f"{url}/services/egress/requests"
    return browser, hops


def test_oauth_login_with_pkce_and_per_decision_identity_check(hub):
    browser, hops = login(hub, AUTHOR)
    authorize = next(h for h in hops if "/hub/api/oauth2/authorize" in h)
    params = parse_qs(urlparse(authorize).query)
    assert params["code_challenge_method"] == ["S256"] and len(params["code_challenge"][0]) >= 43
    assert any("/services/egress/oauth_callback?code=" in h for h in hops)

    page = browser.get(f"{hub}/services/egress/requests")
    assert f"{AUTHOR} ·" in page.text and "New request" in page.text
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)
    origin = {"Origin": hub}
    r = browser.post(
        f"{hub}/services/egress/requests",
        data={"_csrf": csrf, "project": PROJECT, "title": "via SSO"},
        headers=origin,
    )
    assert r.status_code == 200 and "via SSO" in r.text
    # the session cookie is HttpOnly, SameSite=Lax and scoped to the service
    cookie = next(c for c in browser.cookies.jar if c.name == "egress-session")
    assert cookie.path == "/services/egress/" and cookie.has_nonstandard_attr("HttpOnly")

    # the hub revokes the user's tokens: the next state-changing request is refused at once,
    # whatever the service cached about the session
    admin = {"Authorization": f"token {ADMIN_TOKEN}"}
    tokens = httpx.get(f"{hub}/hub/api/users/{AUTHOR}/tokens", headers=admin).json()["api_tokens"]
    for t in tokens:
        httpx.delete(f"{hub}/hub/api/users/{AUTHOR}/tokens/{t['id']}", headers=admin).raise_for_status()
    r = browser.post(
        f"{hub}/services/egress/requests",
        data={"_csrf": csrf, "project": PROJECT, "title": "after logout"},
        headers=origin,
        follow_redirects=False,
    )
    assert r.status_code == 401


def test_forged_cookie_and_state_are_refused(hub):
    browser = httpx.Client(timeout=30)
    browser.cookies.set("egress-session", "forged", path="/services/egress/")
    r = browser.get(f"{hub}/services/egress/requests")
    assert r.status_code == 302 and "/services/egress/login" in r.headers["location"]
    r = browser.get(f"{hub}/services/egress/oauth_callback?code=abc&state=xyz")
    assert r.status_code == 400
    api = browser.get(f"{hub}/services/egress/api/requests")
    assert api.status_code == 401


def test_roles_come_from_the_registry_not_the_hub(hub):
    browser, _ = login(hub, CHECKER1)
    page = browser.get(f"{hub}/services/egress/queue")
    assert page.status_code == 200 and "Review queue" in page.text
    # a hub user unknown to the registry can sign in but may do nothing
    stranger, _ = login(hub, "stranger")
    page = stranger.get(f"{hub}/services/egress/requests")
    assert "New request" not in page.text


def test_api_tokens_need_the_egress_access_scope(hub):
    admin = {"Authorization": f"token {ADMIN_TOKEN}"}
    httpx.post(f"{hub}/hub/api/users/{AUTHOR}", headers=admin)  # 201, or 409 when it exists

    def token(scopes):
        r = httpx.post(f"{hub}/hub/api/users/{AUTHOR}/tokens", headers=admin, json={"scopes": scopes})
        assert r.status_code == 201, r.text
        return {"Authorization": f"token {r.json()['token']}"}

    egress_api = f"{hub}/services/egress/api/me"
    assert (
        httpx.get(egress_api, headers=token(["access:services!service=egress"])).json()["username"] == AUTHOR
    )
    # a token that identifies the user but was not issued for egress (like a workspace's) is refused
    assert httpx.get(egress_api, headers=token(["read:users:name!user"])).status_code == 401

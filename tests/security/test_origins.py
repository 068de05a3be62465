"""Nothing a researcher's server can produce shares an origin with the hub or a TRE service.

The attack (found on main before this control): a researcher gets her own HTML served by her
workspace; a signed-in output checker opens the link; its script reads the checker's egress pages,
takes the CSRF token and votes in the checker's name, defeating the two-person review.

- `test_researcher_bytes_are_not_served_from_her_workspace`: she writes a page into every place
  her server could serve from; no URL on her origin serves it (JupyterLab's data, extension and
  settings directories are in the image, read-only).
- `test_a_page_on_the_researchers_origin_cannot_act_as_the_checker`: a page on her origin (however
  it got there) runs in the checker's Chromium, through the real proxy, and can neither read nor
  post to the egress service or the hub API. The same page placed on the egress and hub origins
  (what a single origin would mean) does both: the origins are the control, and the attack is real.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures_browser import sign_in
from tests.fixtures_hub import PASSWORD, Hub, docker_exec, free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.e2e]
CHECKER = "cara"
MARK = "RESEARCHER-WRITTEN-7f3a"

ATTACK = """<!doctype html><html><head><title>loading</title></head><body>{mark}<script>
const results = {{}};
async function attempt(name, f) {{
  try {{ results[name] = await f(); }} catch (e) {{ results[name] = "blocked: " + e; }}
}}
(async () => {{
  await attempt("egress_read", async () => {{
    const r = await fetch("{egress}files/{fid}", {{credentials: "include"}});
    const text = await r.text();
    const token = text.match(/name="_csrf" value="([^"]+)"/);
    if (!token) return "read " + r.status + " without a token";
    const sha = text.match(/name="sha256" value="([0-9a-f]+)"/)[1];
    const body = new URLSearchParams({{_csrf: token[1], rid: "{rid}", decision: "approve", sha256: sha}});
    const vote = await fetch("{egress}files/{fid}/vote", {{method: "POST", credentials: "include", body}});
    return "voted " + vote.status;
  }});
  await attempt("egress_blind_post", async () => {{
    const body = new URLSearchParams({{rid: "{rid}", decision: "approve"}});
    const options = {{method: "POST", credentials: "include", body, mode: "no-cors"}};
    const r = await fetch("{egress}files/{fid}/vote", options);
    return "sent " + r.type;
  }});
  await attempt("hub_read", async () => {{
    // JupyterHub wants its _xsrf cookie echoed in a header: only a page on its origin can read it.
    const xsrf = (document.cookie.match(/(?:^|; )_xsrf=([^;]+)/) || [])[1] || "";
    const headers = {{"X-XSRFToken": decodeURIComponent(xsrf)}};
    const r = await fetch("{hub}/hub/api/user", {{credentials: "include", headers}});
    return "read " + r.status + " " + (await r.text()).slice(0, 2000);
  }});
  document.body.setAttribute("data-results", JSON.stringify(results));
  document.title = "done";
}})();
</script></body></html>"""


class Attacker:
    """A web server with the attacker's page, put on any origin through a proxy route."""

    def __init__(self, hub: Hub, page: str) -> None:
        self.hub, self.page = hub, page.encode()
        self.port = free_port()
        body = self.page

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def place(self, host: str, path: str) -> str:
        """Route https://<host>/<path> to the attacker's page (a route JupyterHub leaves alone)."""
        s = self.hub.settings
        token = (s.state_dir / "proxy-api-token").read_text()
        spec = f"/{host}{path}"
        r = httpx.post(
            f"http://127.0.0.1:{s.proxy_api_port}/api/routes{spec}",
            json={"target": f"http://127.0.0.1:{self.port}"},
            headers={"Authorization": f"token {token}"},
        )
        assert r.status_code == 201, r.text
        return f"https://{host}:{s.public_port}{path}/attack.html"

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def review(tre_hub, running) -> Iterator[tuple[int, int]]:
    """alice's submitted request on proj-a, and the checker cara assigned to it with a hub login."""
    from egress.review.base import EgressContext
    from egress.review.commands import EgressCommands
    from hub import registry as reg
    from hub.kernel.db import session_scope
    from hub.workspaces.login import create_login
    from tests.fixtures_registry import ADMIN, CUSTODIAN

    with session_scope(tre_hub.settings) as s:
        reg.add_user(s, ADMIN, CHECKER, "Cara Checker")
        reg.add_member(s, CUSTODIAN, "proj-a", CHECKER, role="checker")
    tre_hub.totp[CHECKER] = create_login(CHECKER, PASSWORD, tre_hub.settings)
    home = tre_hub.settings.home_dir("proj-a", "alice")
    (home / "counts.csv").write_text("region,count\nNorth,40\nSouth,55\n")
    commands = EgressCommands(EgressContext(tre_hub.settings))
    rid = commands.create_request("alice", "proj-a", "Counts by region")
    gid = commands.add_group("alice", rid, "tables", "Patients by region", "Counts of at least 10")
    fid = commands.add_file("alice", rid, gid, "counts.csv", "output")
    commands.submit("alice", rid)
    yield rid, fid


def signed_in_checker(browser, hub: Hub):
    """The checker in their own browser, signed in to the hub and to the egress service."""
    context, page = sign_in(browser, hub, CHECKER)
    page.goto(f"{hub.egress_url}queue")
    page.get_by_text("Counts by region").wait_for()  # the egress session works
    return context, page


def run_attack(page, url: str) -> dict:
    page.goto(url)
    page.wait_for_function("document.title === 'done'", timeout=30_000)
    return json.loads(page.locator("body").get_attribute("data-results"))


def votes_by_checker(hub: Hub, rid: int) -> list:
    return [d for actor, d in hub.audit_events("egress.review.vote", str(rid)) if actor == CHECKER]


def test_a_page_on_the_researchers_origin_cannot_act_as_the_checker(tre_hub, review, browser):
    rid, fid = review
    settings = tre_hub.settings
    hub_origin = settings.origin()
    page_html = ATTACK.format(mark=MARK, egress=tre_hub.egress_url, hub=hub_origin, rid=rid, fid=fid)
    attacker = Attacker(tre_hub, page_html)
    context, page = signed_in_checker(browser, tre_hub)
    try:
        alice_host = f"alice.{settings.domain}"
        results = run_attack(page, attacker.place(alice_host, "/user/alice/attack"))
        assert results["egress_read"].startswith("blocked"), results
        assert results["hub_read"].startswith("blocked"), results
        assert votes_by_checker(tre_hub, rid) == [], "a page on the researcher's origin voted as the checker"
        csrf = [
            d for _, d in tre_hub.audit_events("egress.refused.csrf", f"/services/egress/files/{fid}/vote")
        ]
        assert csrf, "the blind cross-origin post should have been refused and audited"

        # Control: the same page on the egress and hub origins (what one shared origin would give).
        egress_host = tre_hub.egress_url.split("//")[1].split(":")[0]
        same_origin = run_attack(page, attacker.place(egress_host, "/user/alice/attack"))
        assert same_origin["egress_read"].startswith("voted 200"), same_origin
        assert votes_by_checker(tre_hub, rid), "the control attack should have voted"
        on_hub = run_attack(page, attacker.place(settings.domain, "/hub/attack"))
        assert CHECKER in on_hub["hub_read"] and on_hub["hub_read"].startswith("read 200"), on_hub
    finally:
        context.close()
        attacker.close()


# Every place a researcher can write in her workspace, and every path her server could serve it on.
WRITABLE = [
    "/home/jovyan/evil.html",
    "/home/jovyan/.local/share/jupyter/labextensions/evil/static/evil.html",
    "/tmp/evil.html",
    "/tmp/jupyter/data/labextensions/evil/static/evil.html",
    "/tmp/jupyter/runtime/evil.html",
    "/tmp/ipython/evil.html",
    "/tmp/share/jupyter/labextensions/evil/static/evil.html",
    "/tmp/share/jupyter/kernels/evil/evil.html",
    "/opt/tre/share/jupyter/labextensions/evil/static/evil.html",  # read-only: this write fails
]
URLS = [
    "lab/extensions/evil/static/evil.html",
    "static/evil.html",
    "static/lab/evil.html",
    "files/evil.html",
    "view/evil.html",
    "kernelspecs/evil/evil.html",
    "nbextensions/evil.html",
    "custom/evil.html",
    "lab/api/themes/evil/evil.html",
    "lab/themes/evil/evil.html",
    "lab/static/evil.html",
    "api/contents/evil.html?content=1",
    "tree/evil.html",
    "evil.html",
]


def test_researcher_bytes_are_not_served_from_her_workspace(tre_hub, running):
    script = f"""
import os, sys
for path in {WRITABLE!r}:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            fh.write("<html><body>{MARK}<script>alert(1)</script></body></html>")
        print("wrote", path)
    except OSError as e:
        print("refused", path, e.errno)
"""
    r = docker_exec(running["alice"], "python3", "-c", script)
    assert r.returncode == 0, r.stderr
    assert "wrote /home/jovyan/evil.html" in r.stdout  # control: she can write her own files
    assert "refused /opt/tre/share/jupyter" in r.stdout  # the data directory is in the image
    # Jupyter finds extensions and kernel specs when it starts: restart, as she would.
    tre_hub.stop("alice", "proj-a")
    tre_hub.start("alice", "proj-a")
    base = tre_hub.user_url("alice", "proj-a")
    with tre_hub.client(follow_redirects=True) as visitor:  # what a checker's browser gets
        for url in URLS:
            response = visitor.get(base + url)
            served = response.status_code == 200 and MARK in response.text
            assert not served, f"{url} served the researcher's page ({response.headers.get('content-type')})"


def test_the_image_keeps_jupyter_data_read_only(tre_hub, running):
    r = docker_exec(running["alice"], "sh", "-c", "echo $JUPYTER_DATA_DIR; jupyter --paths --json")
    data_dir, paths = r.stdout.split("\n", 1)
    assert data_dir == "/opt/tre/share/jupyter"
    for path in json.loads(paths)["data"]:
        assert not re.match(r"^(/home|/tmp)", path), f"a writable data path: {path}"
        assert not Path(path).is_relative_to("/home")

"""The running hub: progress messages, managed services, secrets on disk, bind addresses, home page."""

from __future__ import annotations

import json
import stat
import threading

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_spawn_progress_messages(tre_hub):
    tre_hub.ensure_user("alice")
    events: list[dict] = []

    def follow() -> None:
        url = f"{tre_hub.url}/hub/api/users/alice/servers/proj-c/progress"
        headers = {"Authorization": f"token {tre_hub.token}"}
        with tre_hub.client(timeout=120) as c, c.stream("GET", url, headers=headers) as r:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))

    r = tre_hub.request_start("alice", "proj-c")
    assert r.status_code in (201, 202), r.text
    try:
        t = threading.Thread(target=follow, daemon=True)
        t.start()
        tre_hub.wait_ready("alice", "proj-c")
        t.join(timeout=30)
    finally:
        tre_hub.stop("alice", "proj-c")
    messages = [e.get("message", "") for e in events]
    assert events and events[-1].get("ready"), messages
    if r.status_code == 202:  # a spawn that was still pending shows every step, in order
        steps = [
            "Checking your access",
            "Mounting release 1",
            "Starting your workspace",
            "Waiting for JupyterLab",
        ]
        found = [next(i for i, m in enumerate(messages) if step in m) for step in steps]
        assert found == sorted(found), messages


def test_managed_services(tre_hub):
    services = tre_hub.api("GET", "/services").json()
    assert "idle-culler" in services
    assert "tre-admin" in services
    assert "egress" in services
    assert services["egress"]["url"] == f"http://127.0.0.1:{tre_hub.settings.egress_port}"
    culler = services["idle-culler"]
    assert culler["command"] and "--timeout=3600" in culler["command"]


def test_secrets_are_private(tre_hub):
    state = tre_hub.settings.state_dir
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for name in ("jupyterhub_cookie_secret", "proxy-api-token", "hub-admin-token", "jupyterhub.sqlite"):
        mode = stat.S_IMODE((state / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))


def test_bind_addresses(tre_hub):
    import subprocess

    listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout.split("\n")
    local = {line.split()[3] for line in listening if line.strip()}
    s = tre_hub.settings
    assert f"{tre_hub.gateway}:{s.hub_port}" in local
    assert f"127.0.0.1:{s.public_port}" in local
    assert (
        not {f"0.0.0.0:{s.hub_port}", f"*:{s.hub_port}", f"[::]:{s.hub_port}", f"0.0.0.0:{s.public_port}"}
        & local
    )


def test_home_page_lists_projects_as_named_servers(tre_hub, running):
    """bob sees exactly his open project, with a start link for the named server."""

    from tests.security.test_hub_auth import PASSWORD, login

    with tre_hub.client(base_url=tre_hub.url) as c:
        assert login(c, "bob", PASSWORD, tre_hub.code("bob"))
        page = c.get("/hub/home").text
    assert "Project proj-b" in page and "proj-a" not in page and "proj-closed" not in page
    assert f"{tre_hub.user_url('bob', 'proj-b')}" in page  # running: an open link, on bob's own origin
    assert tre_hub.egress_url in page  # the way to release requests

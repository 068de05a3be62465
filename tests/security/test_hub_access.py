"""Through the hub: who may spawn what, what a workspace's own token can do, what the proxy serves.

Every refusal is checked together with an allowed case of the same request, so a broken request
cannot pass as a refusal.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.fixtures_hub import ENGINES, docker_exec, docker_inspect, hub_on_each_engine, running_pair

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# Every test here runs on the plain Docker engine and on a single-node swarm.
hub = pytest.fixture(hub_on_each_engine, scope="module", params=ENGINES, name="hub")
workspaces = pytest.fixture(running_pair, scope="module", name="workspaces")


@pytest.mark.parametrize(
    ("user", "project", "reason"),
    [
        ("mallory", "proj-a", "not a researcher on project proj-a"),
        ("alice", "proj-closed", "proj-closed is closed"),
        ("alice", "proj-expired", "no approved, unexpired dataset grant"),
        ("alice", "proj-b", "not a researcher on project proj-b"),
    ],
)
def test_spawn_refused_with_403_and_audited(hub, workspaces, user, project, reason):
    assert hub.server("alice", "proj-a")["ready"]  # control: the same request works for a member
    assert hub.audit_events("workspace.start", "proj-a")
    before = len(hub.audit_events("workspace.refused", project))
    r = hub.request_start(user, project)
    assert r.status_code == 403, r.text
    assert reason in r.json()["message"]
    events = hub.audit_events("workspace.refused", project)
    assert len(events) == before + 1
    assert events[-1][0] == user and reason in events[-1][1]["reason"]
    assert not hub.workspace_exists(user, project)
    assert hub.server(user, project) is None


def test_membership_rechecked_on_every_spawn(hub):
    """A restart replays the stored request; losing membership in between must stop it."""
    from hub import registry as reg
    from hub.kernel.db import session_scope

    hub.start("alice", "proj-c")
    hub.stop("alice", "proj-c")
    with session_scope(hub.settings) as s:
        reg.remove_member(s, "lead", "proj-c", "alice")
    try:
        r = hub.request_start("alice", "proj-c")
        assert r.status_code == 403 and "not a researcher" in r.json()["message"], f"{r.text}\n{hub.tail()}"
    finally:
        with session_scope(hub.settings) as s:
            reg.add_member(s, "lead", "proj-c", "alice")


def test_membership_lost_while_starting_refuses_the_start(hub):
    """The lead removes a researcher after her start passed its permit check, while the container
    starts: the start is refused with the reason, and no server is handed over, not even until the
    next sweep."""
    from hub import registry as reg
    from hub.kernel.db import session_scope

    checked = len(hub.audit_events("workspace.start", "proj-c"))
    refused = len(hub.audit_events("workspace.refused", "proj-c"))
    with ThreadPoolExecutor(1) as pool:
        response = pool.submit(hub.request_start, "alice", "proj-c")
        deadline = time.monotonic() + 30
        while len(hub.audit_events("workspace.start", "proj-c")) == checked:
            assert time.monotonic() < deadline and not response.done(), "the start never checked"
            time.sleep(0.02)
        try:
            with session_scope(hub.settings) as s:
                reg.remove_member(s, "lead", "proj-c", "alice")
            r = response.result(timeout=120)
            assert r.status_code == 403, f"{r.status_code} {r.text}\n{hub.tail()}"
            assert "not a researcher" in r.json()["message"]
            events = hub.audit_events("workspace.refused", "proj-c")
            assert len(events) == refused + 1 and events[-1][0] == "alice"
            assert hub.server("alice", "proj-c") is None
            assert not hub.workspace_exists("alice", "proj-c")
        finally:
            with session_scope(hub.settings) as s:
                reg.add_member(s, "lead", "proj-c", "alice")


def test_user_options_cannot_choose_image_or_mounts(hub):
    hub.ensure_user("alice")
    r = hub.api(
        "POST",
        "/users/alice/servers/proj-c",
        json={"image": "busybox:latest", "mounts": [{"source": "/", "target": "/host"}], "cmd": ["sh"]},
    )
    assert r.status_code in (201, 202), r.text
    try:
        hub.wait_ready("alice", "proj-c")
        info = docker_inspect(hub.container("alice", "proj-c"))
        assert info["Config"]["Image"] == hub.settings.image
        assert info["Config"]["Cmd"][0] == "jupyterhub-singleuser"
        # (On a swarm /tmp is a tmpfs volume, not a bind: tests/integration/test_spawn.py.)
        binds = {m["Destination"] for m in info["Mounts"] if m["Type"] == "bind"}
        assert binds == {"/data", "/home/jovyan"}
        assert {m["Destination"] for m in info["Mounts"]} - binds <= {"/tmp"}
    finally:
        hub.stop("alice", "proj-c")


def _container_token(container: str) -> str:
    r = docker_exec(container, "sh", "-c", "echo $JUPYTERHUB_API_TOKEN")
    token = r.stdout.strip()
    assert token
    return token


def test_workspace_token_cannot_list_users_or_reach_other_servers(hub, workspaces):
    token = _container_token(workspaces["alice"])
    # From inside the workspace, against the hub API it can reach:
    script = """
import os, sys, urllib.request, urllib.error
base = os.environ["JUPYTERHUB_API_URL"]
auth = {"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"]}
for path in ("/user", "/users", "/users/bob", "/users/bob/servers/proj-b", "/services"):
    req = urllib.request.Request(base + path, headers=auth)
    try:
        print(path, urllib.request.urlopen(req, timeout=5).status)
    except urllib.error.HTTPError as e:
        print(path, e.code)
"""
    r = docker_exec(workspaces["alice"], "python3", "-c", script)
    codes = dict(line.split() for line in r.stdout.splitlines())
    assert codes.pop("/user") == "200", r.stdout + r.stderr  # control: the token works for itself
    assert codes.pop("/services") in ("200", "403")  # public service list; harmless either way
    assert all(code in ("403", "404") for code in codes.values()), codes
    # Through the proxy (from the host; the workspace cannot even reach the proxy):
    headers = {"Authorization": f"token {token}"}
    with hub.client(headers=headers) as c:
        own = c.get(f"{hub.user_url('alice', 'proj-a')}api/status")
        other = c.get(f"{hub.user_url('bob', 'proj-b')}api/status")
    assert own.status_code == 200  # control
    assert other.status_code in (403, 404) or (
        other.status_code == 302 and "/bob/" not in other.headers["location"]
    )


def test_downloads_through_the_proxy_refused(hub, workspaces):
    home = hub.settings.home_dir("proj-a", "alice")
    (home / "results.csv").write_text("a,b\n1,2\n")
    (home / "results.csv").chmod(0o644)
    nb = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
    (home / "nb.ipynb").write_text(nb)
    headers = {"Authorization": f"token {hub.user_token('alice')}"}
    base = hub.user_url("alice", "proj-a").rstrip("/")
    client = hub.client(headers=headers, follow_redirects=False)

    def get(path: str) -> httpx.Response:
        return client.get(base + path)

    assert get("/api/contents/results.csv").status_code == 200  # control: token and path are right
    for path in (
        "/files/results.csv",
        "/files/results.csv?download=1",
        "/nbconvert/html/nb.ipynb?download=true",
        "/nbconvert/script/nb.ipynb?download=true",
    ):
        r = get(path)
        assert r.status_code in (403, 404), (path, r.status_code)
    r = client.post(f"{base}/api/terminals")
    assert r.status_code in (403, 404), r.status_code
    client.close()


@pytest.fixture
def open_host_port() -> Iterator[int]:
    """A listening socket on every host address (the kernel completes handshakes from its backlog)."""
    with socket.socket() as srv:
        srv.bind(("0.0.0.0", 0))  # noqa: S104 - the point: a service on every host address
        srv.listen(64)
        yield srv.getsockname()[1]


def test_no_spawn_without_network_controls_and_the_firewall_is_what_blocks(hub, workspaces, open_host_port):
    """Remove the INPUT hook: spawns are refused (503), and a probe shows the hook was the control."""
    from hub.host import network
    from tests.fixtures_hub import probe_tcp

    plan = network.plan(hub.settings)
    chain, rule = plan.hooks()[0]
    assert chain == "INPUT"
    subprocess.run(["iptables", "-w", "10", "-D", chain, *rule], check=True)
    try:
        assert not network.status(hub.settings).ok
        r = hub.request_start("alice", "proj-c")
        assert r.status_code == 503 and "tre network setup" in r.json()["message"]
        assert hub.server("alice", "proj-c") is None
        # With the hook gone, the workspace reaches a host service it could not reach before.
        assert probe_tcp(workspaces["alice"], [(hub.gateway, open_host_port)]) == ["open"]
    finally:
        network.setup(hub.settings)
    assert probe_tcp(workspaces["alice"], [(hub.gateway, open_host_port)]) != ["open"]
    hub.start("alice", "proj-c")  # control: with the rules back, the same request works
    hub.stop("alice", "proj-c")

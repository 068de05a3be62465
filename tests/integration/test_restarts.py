"""Restarts lose nothing: the hub killed outright, restarted gracefully, or the guard killed; each time
a researcher's kernel keeps its state and she carries on through the same URL. And nothing is left
behind: a second `tre hub` refuses ports in use, and a stop leaves no process and no port.

Found before: `cleanup_servers = True` made a graceful hub restart stop every workspace, a `kill -9`
of the hub ended the researcher's running workspace, and the hub's services outlived it holding
their ports, so the next start's egress service could not bind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hub.kernel.lifecycle import process_identity
from tests.fixtures_hub import (
    Hub,
    children,
    docker_inspect,
    hub_of_its_own,
    own_workspace,
    process_pids,
    wait_until,
)
from tests.fixtures_kernel import execute, kernel_channel

pytestmark = [pytest.mark.docker, pytest.mark.slow]
BACK_WITHIN = 30  # seconds, as the issue asks
# JupyterHub notices that a managed service died at its next poll of it (every 30 s, +-10%), then
# starts a new one: up to 33 s, plus the new one's start.
SERVICE_BACK_WITHIN = 60
# What one attempt of a poll may take: a check blocked for longer would use up the poll's window
# without ever trying again (a hub, proxy or guard coming back may hold a connection open).
ATTEMPT_SECONDS = 10


@pytest.fixture(scope="module")
def rhub(tmp_path_factory, hub_image) -> Iterator[Hub]:
    yield from hub_of_its_own(tmp_path_factory, hub_image, "restarts")


@dataclass
class Kernel:
    user: str
    project: str
    token: str
    id: str
    container: str


@pytest.fixture(scope="module")
def kernel(rhub) -> Kernel:
    """kira's workspace with a kernel that holds `state = 42`, set through the proxy and the guard."""
    user, project, _ = own_workspace(rhub, "kira")
    token = rhub.user_token(user)
    ws, kernel_id = kernel_channel(rhub, user, project, token, "")
    with ws:
        assert execute(ws, "state = 6 * 7", "")["status"] == "ok"
    return Kernel(user, project, token, kernel_id, docker_inspect(rhub.container(user, project))["Id"])


def still_holds_state(hub: Hub, k: Kernel) -> bool:
    """The same kernel, reached again through the same public URL, still knows `state`."""
    ws, _ = kernel_channel(hub, k.user, k.project, k.token, "", kernel=k.id, wait=ATTEMPT_SECONDS)
    with ws:
        reply = execute(ws, "assert state == 42", "", seconds=ATTEMPT_SECONDS)
    return reply["status"] == "ok"


def workspace_answers(hub: Hub, k: Kernel) -> bool:
    """The researcher's URL works again: the hub knows the server and the proxy routes to it."""
    server = hub.server(k.user, k.project, timeout=ATTEMPT_SECONDS)
    if not (server and server.get("ready")):
        return False
    with hub.client(headers={"Authorization": f"token {k.token}"}, timeout=ATTEMPT_SECONDS) as client:
        return client.get(hub.user_url(k.user, k.project) + "api/kernels").status_code == 200


def egress_answers(hub: Hub) -> bool:
    with hub.client(timeout=ATTEMPT_SECONDS) as client:
        return client.get(hub.egress_url + "login").status_code < 500


def portal_answers(hub: Hub) -> bool:
    with httpx.Client(timeout=ATTEMPT_SECONDS) as client:
        return (
            client.get(f"http://127.0.0.1:{hub.settings.portal_port}/services/portal/login").status_code < 500
        )


def alive(pid: int) -> bool:
    """Still running (an orphan is adopted by init, so it is no longer anyone's child here)."""
    return process_identity(pid) is not None


def portal_processes(hub: Hub) -> set[int]:
    """The portal's supervisor and the worker processes it runs (TRE_PORTAL_WORKERS of them)."""
    supervisors = process_pids(hub, "hub.portal")
    return set(supervisors) | {w for p in supervisors for w in children(p)}


def assert_same_container(hub: Hub, k: Kernel) -> None:
    assert docker_inspect(hub.container(k.user, k.project))["Id"] == k.container


def test_a_hub_killed_outright_is_back_within_30s_and_the_kernel_keeps_its_state(rhub, kernel):
    hub_pid = int((rhub.settings.state_dir / "jupyterhub.pid").read_text())
    services = {m: process_pids(rhub, m) for m in ("egress", "hub.guard", "hub.enforcement")}
    services["portal and its workers"] = sorted(portal_processes(rhub))
    assert all(services.values()), f"the hub should be running its services: {services}"
    os.kill(hub_pid, signal.SIGKILL)
    back = wait_until(lambda: workspace_answers(rhub, kernel), BACK_WITHIN, "the workspace answering")
    assert still_holds_state(rhub, kernel)
    assert_same_container(rhub, kernel)
    # The killed hub's services died with it; the new hub runs fresh ones that hold the ports.
    now = {m: process_pids(rhub, m) for m in ("egress", "hub.guard", "hub.enforcement")}
    now["portal and its workers"] = [p for p in services["portal and its workers"] if alive(p)]
    for module, old in services.items():
        assert not set(old) & set(now[module]), f"{module} outlived its hub"
    wait_until(lambda: egress_answers(rhub), 30, "the new egress service answering")
    wait_until(lambda: portal_answers(rhub), 30, "the new portal answering")
    print(f"hub back and the workspace answering {back:.1f}s after kill -9")


def test_a_portal_killed_outright_takes_its_workers_with_it_and_is_replaced(rhub):
    """A worker left behind would hold the portal's port: the hub's new portal could not bind."""
    (supervisor,) = process_pids(rhub, "hub.portal")
    workers = children(supervisor)  # uvicorn's workers, and multiprocessing's resource tracker
    spawned = [w for w in workers if b"spawn_main" in Path(f"/proc/{w}/cmdline").read_bytes()]
    assert len(spawned) == (rhub.settings.portal_workers if rhub.settings.portal_workers > 1 else 0), workers
    os.kill(supervisor, signal.SIGKILL)
    wait_until(lambda: not any(map(alive, workers)), 10, "the old workers exiting")
    wait_until(lambda: portal_answers(rhub), SERVICE_BACK_WITHIN, "the hub's new portal answering")


def test_a_graceful_restart_of_tre_hub_keeps_the_kernel(rhub, kernel):
    rhub.process.stop(keep_workspaces=True)  # as `systemctl restart tre-hub` does: SIGTERM, start again
    assert_same_container(rhub, kernel)
    rhub.process.start()
    wait_until(lambda: workspace_answers(rhub, kernel), BACK_WITHIN, "the workspace answering")
    assert still_holds_state(rhub, kernel)
    assert_same_container(rhub, kernel)


def test_a_guard_killed_outright_is_replaced_and_the_kernel_keeps_its_state(rhub, kernel):
    (old,) = process_pids(rhub, "hub.guard")
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: process_pids(rhub, "hub.guard") not in ([], [old]), SERVICE_BACK_WITHIN, "a new guard")
    wait_until(lambda: still_holds_state(rhub, kernel), BACK_WITHIN, "the kernel through the new guard")
    assert_same_container(rhub, kernel)


def test_a_second_tre_hub_refuses_the_ports_in_use_and_says_which(rhub):
    tre = Path(sys.executable).parent / "tre"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRE_")} | rhub.settings.to_env()
    done = subprocess.run([str(tre), "hub"], env=env, capture_output=True, text=True, timeout=60)
    said = done.stdout + done.stderr
    assert done.returncode != 0, said
    for port in (rhub.settings.public_port, rhub.settings.egress_port, rhub.settings.guard_port):
        assert f":{port} is in use" in said, said
    assert egress_answers(rhub), "the running TRE must not be disturbed"


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_stop_leaves_no_process_and_no_port_behind(rhub, kernel):
    # A hub killed outright first (its proxy is left running until the next hub replaces it), then
    # the stop: nothing of this TRE may be left.
    os.kill(int((rhub.settings.state_dir / "jupyterhub.pid").read_text()), signal.SIGKILL)
    wait_until(lambda: workspace_answers(rhub, kernel), BACK_WITHIN, "the workspace answering")
    wait_until(lambda: portal_answers(rhub), 30, "the new portal answering")
    portal = portal_processes(rhub)
    rhub.process.stop()
    s = rhub.settings
    time.sleep(1)
    left = {m: process_pids(rhub, m) for m in ("jupyterhub", "egress", "hub.guard", "hub.enforcement")}
    left["portal and its workers"] = sorted(portal_processes(rhub) | {p for p in portal if alive(p)})
    assert not any(left.values()), left
    for port in (s.public_port, s.http_port, s.proxy_api_port, s.egress_port, s.guard_port, s.portal_port):
        assert port_free(port), f"port {port} still held"
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{s.guard_port}/_guard/health", timeout=2)
    assert (
        subprocess.run(
            ["docker", "ps", "-q", "--filter", f"name={rhub.container(kernel.user, kernel.project)}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        == ""
    )

"""Growing from one host to two (TRE_ENGINE=swarm): the hub's engine and a second node joined as a
worker (tests/fixtures_swarm_node: a second dockerd with a network and firewall of its own).

- A node that joined but has not run `tre network setup` blocks every workspace start, because its
  firewall and bridge are not there; the manager's own setup meanwhile succeeds and names the node it
  waits for (Ansible sets the manager up first); once the node has run setup (as a worker, which sees
  a swarm network only once a task of its own uses it), the manager's checks pass.
- A node with its firewall but without the guard's link (hub.guard.link) blocks starts too. With it,
  a workspace on the second node is served through the public proxy, the guard on the hub's node
  (which records its cells) and the link, and checks tokens with the hub API through the link's
  relay. The link and the guard's hub door answer only the shared secret, and a workspace on the
  node reaches neither door, and through the relay only the hub API.
- A job lands on the second node and runs there sealed as on the hub's node: no-new-privileges from
  that node's daemon, its sealed network cut off by that node's firewall, its outputs on the shared
  storage.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hub.jobs.runner import container_name
from tests.fixtures_hub import (
    Hub,
    docker_out,
    end_process,
    free_port,
    hub_of_its_own,
    own_workspace,
    wait_until,
)
from tests.fixtures_jobs import put_notebook, submit_inside, wait_status
from tests.fixtures_kernel import execute, kernel_channel, notebook_bytes
from tests.fixtures_netns import enter
from tests.fixtures_swarm_node import Node, second_node

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@dataclass
class TwoNodes:
    hub: Hub
    node: Node
    hub_node_id: str
    problems_before_setup: list[str]
    manager_setup_before: list[str]  # the manager's `tre network setup`, run again once the node joined
    start_before_setup: int  # the hub's answer to a workspace start after that, the node not set up
    listener_port: int  # a TCP listener on the second node's own address (its host, not a container)
    problems_without_link: list[str]  # the manager's checks once the node had its firewall, no link yet
    start_without_link: int
    link_log: Path
    manager_address: str  # the hub's node in the swarm: where its hub door listens


def code_runs(hub: Hub, user: str) -> list[str]:
    from hub.kernel import codelog
    from hub.kernel.db import session_scope

    with session_scope(hub.settings, readonly=True) as s:
        return [r.code for r in codelog.search(s, username=user, limit=1000)]


def task_nodes(service: str) -> set[str]:
    """The nodes the service's running tasks are on."""
    tasks = docker_out("service", "ps", "-q", "--filter", "desired-state=running", service).split()
    nodes = {docker_out("inspect", "-f", "{{.NodeID}}", task).strip() for task in tasks}
    return nodes - {""}  # "": not placed yet


@pytest.fixture(scope="module")
def two(tmp_path_factory, hub_image, swarm) -> Iterator[TwoNodes]:
    from hub.host import network

    hub_started = contextlib.contextmanager(hub_of_its_own)
    with hub_started(tmp_path_factory, hub_image, "nodes", engine="swarm") as hub:
        hub_node_id = docker_out("info", "-f", "{{.Swarm.NodeID}}").strip()
        with second_node(hub_image) as node:
            own_workspace(hub, "early", start=False)
            manager_setup = network.setup(hub.settings)  # as Ansible runs it: the manager first
            # The manager's setup succeeded, yet nothing may start while the node has no firewall.
            problems = network.status(hub.settings).problems
            start = hub.request_start("early-user", "early-project").status_code
            node.tre(["network", "setup"], env=hub.env)
            # The node has its firewall but no link yet: the guard could not reach a workspace there.
            no_link = network.status(hub.settings).problems
            start_without_link = hub.request_start("early-user", "early-project").status_code
            port = free_port()
            listener = subprocess.Popen(
                [*enter(node.name), "python3", "-m", "http.server", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                with node_link(hub, node) as link_log:
                    yield TwoNodes(
                        hub, node, hub_node_id, problems, manager_setup, start, port,
                        no_link, start_without_link, link_log,
                        docker_out("info", "-f", "{{.Swarm.NodeAddr}}").strip(),
                    )  # fmt: skip
            finally:
                listener.kill()
                listener.wait(timeout=10)
                with contextlib.suppress(Exception):
                    node.tre(["network", "teardown"], env=hub.env)


@contextlib.contextmanager
def node_link(hub: Hub, node: Node) -> Iterator[Path]:
    """`python -m hub.guard.link` on the node, as its service manager runs it; its log's path."""
    log = hub.settings.root / f"link-{node.name}.log"
    with open(log, "w") as out:
        link = subprocess.Popen(
            [*enter(node.name), sys.executable, "-m", "hub.guard.link"],
            env={**os.environ, **hub.env, "DOCKER_HOST": f"unix://{node.socket}"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield log
    finally:
        end_process(link)


def test_a_node_without_its_network_setup_blocks_starts_until_it_has_one(two):

    assert any(two.node.name in p and "anchor" in p for p in two.problems_before_setup), (
        two.problems_before_setup
    )
    assert two.start_before_setup == 503
    # The manager's own setup, run after the node joined, succeeded and said what it waits for.
    assert any(line.startswith("waiting: ") and two.node.name in line for line in two.manager_setup_before), (
        two.manager_setup_before
    )
    # With its firewall but without its link, the node still blocks every start.
    assert any(two.node.name in p and "guard link" in p for p in two.problems_without_link), (
        two.problems_without_link
    )
    assert two.start_without_link == 503
    network_ready(two.hub)
    two.hub.start("early-user", "early-project")


def network_ready(hub: Hub) -> None:
    """Wait for the manager's checks to pass on both nodes: the anchor's task on the new node
    reports once its bridge exists."""
    from hub.host import network

    deadline = time.monotonic() + 60
    while not (status := network.status(hub.settings)).ok and time.monotonic() < deadline:
        time.sleep(0.5)
    assert status.ok, status.problems


def test_a_workspace_on_the_second_node_is_served_through_its_link_and_recorded(two):
    hub, node = two.hub, two.node
    network_ready(hub)
    user, project, _ = own_workspace(hub, "far", start=False)
    service = f"{hub.settings.container_prefix}-{user}--{project}"
    # With the hub's node paused, the swarm can place the workspace only on the second node.
    docker_out("node", "update", "--availability", "pause", two.hub_node_id)
    try:
        hub.start(user, project)
    finally:
        docker_out("node", "update", "--availability", "active", two.hub_node_id)
    assert task_nodes(service) == {node.node_id}
    token = hub.user_token(user)
    # The server checks the token with the hub API, through the node's hub relay; the guard on the
    # hub's node passes the kernel's channel through the link, and records the cell there.
    code = f"print(sum(range(10)))  # {uuid.uuid4().hex}"
    ws, _ = kernel_channel(hub, user, project, token, "")
    with ws:
        assert execute(ws, code, "")["status"] == "ok"
    wait_until(lambda: code in code_runs(hub, user), 15, "the far workspace's cell in the code log")
    # The guard's rules hold for a far workspace: a download route is refused before the link.
    with hub.client(headers={"Authorization": f"token {token}"}) as client:
        refused = client.get(hub.user_url(user, project) + "files/anything.csv")
    assert refused.status_code == 403, refused.text
    hub.stop(user, project)
    assert not hub.workspace_exists(user, project)
    # Stopped: the guard itself says so, having dropped its route to the node with the service.
    guard_url = f"http://127.0.0.1:{hub.settings.guard_port}/user/{user}/{project}/api/status"

    answers: list[tuple[int, str]] = []

    def guard_says_not_running() -> bool:
        answer = httpx.get(guard_url, headers={"Accept": "application/json"})
        answers.append((answer.status_code, answer.headers.get("content-type", "")))
        return answer.status_code == 503 and answers[-1][1].startswith("application/json")

    wait_until(lambda: guard_says_not_running() or 500 in {a[0] for a in answers}, 10, "the guard's answer")
    assert answers[-1][0] == 503 and 500 not in {a[0] for a in answers}, answers


def test_the_link_answers_only_the_guard_and_no_workspace_reaches_it(two):
    from hub.host.network import plan
    from hub.host.swarm import LINK_HEADER, LINK_HEALTH

    hub, node = two.hub, two.node
    network_ready(hub)
    user, project, _ = own_workspace(hub, "near", start=False)
    workspace = f"/user/{user}/{project}/api/status"
    door = f"http://{node.address}:{hub.settings.link_port}"
    secret = hub.settings.link_secret_path.read_text()
    assert httpx.get(door + LINK_HEALTH, headers={LINK_HEADER: secret}).status_code == 200
    # Anyone else on the hosts' network, with no secret or a wrong one: refused at the door.
    for headers in ({}, {LINK_HEADER: "0" * len(secret)}, {LINK_HEADER: secret[:-1]}):
        assert httpx.get(door + workspace, headers=headers).status_code == 403
        assert httpx.get(door + LINK_HEALTH, headers=headers).status_code == 403
    # The hub's door, for the links' relays, likewise.
    hub_door = f"http://{two.manager_address}:{hub.settings.link_port}"
    assert (
        httpx.get(hub_door + "/hub/api/users", headers={"Authorization": f"token {hub.token}"}).status_code
        == 403
    )
    assert httpx.get(hub_door + "/hub/api/", headers={LINK_HEADER: secret}).status_code == 200
    # A workspace on the second node reaches neither door; only the hub relay on its gateway, which
    # passes the hub API and nothing else.
    docker_out("node", "update", "--availability", "pause", two.hub_node_id)
    try:
        hub.start(user, project)
    finally:
        docker_out("node", "update", "--availability", "active", two.hub_node_id)
    gateway, link = plan(hub.settings).gateway, hub.settings.link_port
    container = node.run(
        [
            "docker",
            "ps",
            "-q",
            "--filter",
            f"label=com.docker.swarm.service.name={hub.settings.container_prefix}-{user}--{project}",
        ]
    ).strip()
    # 'dropped' on the node's own addresses is its firewall (the INPUT chain's DROP): without it the
    # link's door answers and nothing listens on the gateway's link port ('refused'). Packets to the
    # hub's node would be forwarded, which the node drops too (not the INPUT chain).
    probe = (
        "import socket, urllib.request\n"
        "def reach(h, p):\n"
        "    try:\n"
        "        socket.create_connection((h, p), timeout=3).close(); return 'reached'\n"
        "    except TimeoutError: return 'dropped'\n"
        "    except ConnectionRefusedError: return 'refused'\n"
        "    except OSError as e: return 'no-route' if e.errno in (101, 113) else f'errno{e.errno}'\n"
        "def get(url):\n"
        "    try: return str(urllib.request.urlopen(url, timeout=5).status)\n"
        "    except urllib.error.HTTPError as e: return str(e.code)\n"
        "    except OSError: return 'blocked'\n"
        f"print(reach({node.address!r}, {link}), reach({gateway!r}, {link}),"
        f" reach({two.manager_address!r}, {link}),"
        f" get('http://{gateway}:{hub.settings.hub_port}/hub/api/'),"
        f" get('http://{gateway}:{hub.settings.hub_port}{workspace}'))\n"
    )
    out = node.run(["docker", "exec", container, "python3", "-c", probe]).split()
    assert out == ["dropped", "dropped", "dropped", "200", "404"], out
    hub.stop(user, project)


PROBE = """import pathlib, socket
def reach(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return 'reached'
    except OSError:
        return 'blocked'
status = pathlib.Path('/proc/self/status').read_text()
results = [str(year), status.split('NoNewPrivs:')[1].split()[0]]
results += [reach(host, port) for host, port in targets]
pathlib.Path('out.txt').write_text(' '.join(results))
"""


def test_a_job_runs_sealed_on_the_second_node_and_writes_into_the_home(two):
    from hub.host.network import plan

    hub, node = two.hub, two.node
    # The workspace on the hub's node, where the test reaches its container (`submit_inside`).
    docker_out("node", "update", "--availability", "pause", node.node_id)
    try:
        user, project, _ = own_workspace(hub, "farjob")
    finally:
        docker_out("node", "update", "--availability", "active", node.node_id)
    sealed_gateway = str(next(ipaddress.ip_network(hub.settings.sealed_subnet).hosts()))
    targets = [
        (sealed_gateway, two.listener_port),  # the second node itself, on the job's own gateway
        (node.address, two.listener_port),  # the second node on its own address
        # The hub API: the sealed network has no route to it at all (the firewall is not tested here).
        (plan(hub.settings).gateway, hub.settings.hub_port),
    ]
    put_notebook(
        hub, user, project, "far.ipynb",
        notebook_bytes(f"targets = {targets!r}\n" + PROBE, parameters="year = 2000"),
    )  # fmt: skip
    # With the hub's node paused, the swarm can place new tasks only on the second node.
    docker_out("node", "update", "--availability", "pause", two.hub_node_id)
    try:
        job_id = submit_inside(hub, user, project, "'far.ipynb', {'year': 2022}")
        running = wait_status(hub, job_id, {"running", "done", "failed"}, timeout=120)
        service = container_name(hub.settings, job_id)
        placed_on: list[str] = []

        def assigned() -> bool:
            # A task exists before the scheduler assigns it a node: until then its NodeID is empty.
            tasks = docker_out("service", "ps", "-q", service).split()
            placed_on[:] = [docker_out("inspect", "-f", "{{.NodeID}}", tasks[0]).strip()] if tasks else []
            return bool(placed_on and placed_on[0])

        wait_until(assigned, 60, f"a node for job {job_id} ({running.status}: {running.reason})")
        assert placed_on == [node.node_id]
    finally:
        docker_out("node", "update", "--availability", "active", two.hub_node_id)
    job = wait_status(hub, job_id, {"done", "failed", "stopped"}, timeout=180)
    home = hub.settings.home_dir(project, user)
    assert job.status == "done", (job.reason, (home / f"jobs/{job_id}/log.txt").read_text())
    # The parameter; no-new-privileges from the second node's daemon; nothing reached.
    assert (home / "out.txt").read_text() == "2022 1 blocked blocked blocked"

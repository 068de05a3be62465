"""Growing from one host to two (TRE_ENGINE=swarm): the hub's engine and a second node joined as a
worker (tests/fixtures_swarm_node: a second dockerd with a network and firewall of its own).

- A node that joined but has not run `tre network setup` blocks every workspace start, because its
  firewall and bridge are not there; the manager's own setup meanwhile succeeds and names the node it
  waits for (Ansible sets the manager up first); once the node has run setup (as a worker, which sees
  a swarm network only once a task of its own uses it), the manager's checks pass.
- Workspaces stay on the hub's node, where the guard and the hub API are (docs/operations.md, More
  than one host); the second node takes other tasks.
- A job lands on the second node and runs there sealed as on the hub's node: no-new-privileges from
  that node's daemon, its sealed network cut off by that node's firewall, its outputs on the shared
  storage.
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from hub.jobs.runner import container_name
from tests.fixtures_hub import Hub, docker_out, free_port, hub_of_its_own, own_workspace, wait_until
from tests.fixtures_jobs import put_notebook, submit_inside, wait_status
from tests.fixtures_kernel import notebook_bytes
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
            port = free_port()
            listener = subprocess.Popen(
                [*enter(node.name), "python3", "-m", "http.server", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                yield TwoNodes(hub, node, hub_node_id, problems, manager_setup, start, port)
            finally:
                listener.kill()
                listener.wait(timeout=10)
                with contextlib.suppress(Exception):
                    node.tre(["network", "teardown"], env=hub.env)


def test_a_node_without_its_network_setup_blocks_starts_until_it_has_one(two):
    from hub.host import network

    assert any(two.node.name in p and "anchor" in p for p in two.problems_before_setup), (
        two.problems_before_setup
    )
    assert two.start_before_setup == 503
    # The manager's own setup, run after the node joined, succeeded and said what it waits for.
    assert any(line.startswith("waiting: ") and two.node.name in line for line in two.manager_setup_before), (
        two.manager_setup_before
    )
    deadline = time.monotonic() + 60
    while not (status := network.status(two.hub.settings)).ok and time.monotonic() < deadline:
        time.sleep(0.5)  # the anchor's task on the new node reports once its bridge exists
    assert status.ok, status.problems
    two.hub.start("early-user", "early-project")


def test_workspaces_stay_on_the_hubs_node_while_the_other_node_takes_tasks(two):
    # The control: a service free to go anywhere spreads onto the second node, so the placement
    # below is the spawner's constraint, not a scheduler that had nowhere else to go.
    name = f"{two.hub.settings.container_prefix}-spread"
    docker_out("service", "create", "-d", "--name", name, "--replicas", "2", "--restart-condition", "none",
            two.hub.settings.image, "sleep", "120")  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while len(nodes := task_nodes(name)) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert nodes == {two.hub_node_id, two.node.node_id}, nodes
    finally:
        docker_out("service", "rm", name)
    for who in ("place-a", "place-b", "place-c"):
        user, project, _ = own_workspace(two.hub, who)
        assert task_nodes(f"{two.hub.settings.container_prefix}-{user}--{project}") == {two.hub_node_id}
        two.hub.stop(user, project)


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
    user, project, _ = own_workspace(hub, "farjob")
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

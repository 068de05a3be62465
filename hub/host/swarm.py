"""The workspace network on Docker Swarm (TRE_ENGINE=swarm): the same bridge on every node.

An overlay network would not do: the host has no route into it (so the guard, a host process, could
not reach a workspace), and it has no inter-container switch to turn off. A swarm-scoped *bridge*
network keeps everything hub.host.network builds for one host, on each node:

- a config-only network `<network>-config` on every node holds the bridge's name, subnet, gateway
  and options (ICC off, no NAT), so the node's firewall chains name the same bridge;
- the swarm network `<network>` (created on a manager) is internal and takes its configuration from
  it: a task attached to it sits on its node's own bridge, reached by that node's guard;
- a node's bridge exists only while a task is attached, and the hub API binds to its gateway, so a
  global service, the anchor, keeps one small task (no capabilities, read-only, no ports) on every
  node. At start it prints its NoNewPrivs flag: a swarm service cannot ask for no-new-privileges
  (Docker 20.10), so each node's daemon must run with it, and the anchor's logs show that it does.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import httpx
from docker.types import (
    ContainerSpec,
    EndpointSpec,
    Resources,
    RestartPolicy,
    ServiceMode,
    TaskTemplate,
)

from hub.host.hardening import tmp_volume
from hub.kernel.secrets import read_or_create_secret
from hub.kernel.settings import Settings

MANAGED_LABEL = "org.tre.managed"
ANCHOR_REPORT = re.compile(r"NoNewPrivs:\s*(\d)")
# The guard and the nodes' links (hub.guard.link) prove themselves to each other with this header.
LINK_HEADER = "X-TRE-Link"
LINK_HEALTH = "/_link/health"


class SwarmError(RuntimeError):
    """The swarm is not in a state the TRE can use; the message says what to do."""


def config_network(network: str) -> str:
    return f"{network}-config"


def sealed_network(settings: Settings) -> str:
    """The swarm network of sealed runs and jobs: internal, ICC off, and the node's firewall drops
    everything in and out of its bridge (a swarm service cannot have no network at all)."""
    return f"{settings.network}-sealed"


def sealed_runs_on(settings: Settings) -> str | None:
    """Where sealed runs and jobs go: None, a container with no network on this host's engine; or on
    a swarm, the sealed network their job services join."""
    return sealed_network(settings) if settings.engine == "swarm" else None


def networks(settings: Settings) -> list[str]:
    return [settings.network, sealed_network(settings)]


def anchor_service(settings: Settings) -> str:
    return f"{settings.network}-anchor"


@dataclass(frozen=True)
class NodeState:
    node_id: str
    hostname: str
    manager: bool


def node_state(client: docker.DockerClient) -> NodeState:
    """This engine's place in the swarm; SwarmError when it is in none."""
    info = client.info()
    swarm = info.get("Swarm") or {}
    if swarm.get("LocalNodeState") != "active":
        raise SwarmError(
            "this Docker engine is not in a swarm: run `docker swarm init` on the first node or "
            "`docker swarm join` on the others (docs/operations.md, More than one host)"
        )
    return NodeState(swarm.get("NodeID", ""), info.get("Name", ""), bool(swarm.get("ControlAvailable")))


def _docker_cli(args: list[str]) -> None:
    # docker-py cannot create config-only networks or networks built from one: the CLI can.
    run = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60, check=False)
    if run.returncode != 0:
        raise SwarmError(f"docker {' '.join(args[:3])} failed: {run.stderr.strip()}")


def ensure_config_network(
    client: docker.DockerClient, network: str, options: dict[str, str], subnet: str, gateway: str
) -> bool:
    """Create this node's config-only network for `network`; True when it was created."""
    name = config_network(network)
    try:
        client.networks.get(name)
        return False
    except docker.errors.NotFound:
        pass
    opts = [arg for key, value in options.items() for arg in ("-o", f"{key}={value}")]
    labels = ["--label", f"{MANAGED_LABEL}=1"]
    _docker_cli(
        ["network", "create", "--config-only", "--subnet", subnet, "--gateway", gateway, *opts, *labels, name]
    )
    return True


def _swarm_network(client: docker.DockerClient, network: str) -> dict:
    return client.api.inspect_network(network, scope="swarm")


def ensure_swarm_network(client: docker.DockerClient, network: str) -> bool:
    """On a manager: the internal swarm network built from the config network; True when created.
    (Docker takes no labels on a network built from a config network.)"""
    try:
        _swarm_network(client, network)
        return False
    except docker.errors.NotFound:
        pass
    _docker_cli(
        [
            "network", "create", "-d", "bridge", "--scope", "swarm", "--internal", "--attachable",
            "--config-from", config_network(network), network,
        ]
    )  # fmt: skip
    return True


def swarm_network_problems(client: docker.DockerClient, network: str, manager: bool) -> list[str]:
    """What is wrong with the swarm network. A worker sees a swarm network only while one of its
    tasks is attached (the sealed network not before a job runs there), so only a manager can say
    that one does not exist."""
    try:
        attrs = _swarm_network(client, network)
    except docker.errors.NotFound:
        if not manager:
            return []
        return [f"swarm network {network} does not exist (run `tre network setup` on a manager)"]
    problems = []
    if attrs.get("Scope") != "swarm" or attrs.get("Driver") != "bridge":
        problems.append(f"network {network} is not a swarm-scoped bridge network")
    if not attrs.get("Internal"):
        problems.append(f"swarm network {network} is not internal")
    if (attrs.get("ConfigFrom") or {}).get("Network") != config_network(network):
        problems.append(
            f"swarm network {network} does not take its configuration from {config_network(network)}"
        )
    return problems


def gwbridge_problems(client: docker.DockerClient, ours: list[ipaddress.IPv4Network]) -> list[str]:
    """Swarm's docker_gwbridge takes the first free /16 of Docker's pools when it is made, which can
    swallow the TRE's subnets (172.31.0.0/16 holds the defaults); overlapping, a node's bridge fails."""
    try:
        configs = client.networks.get("docker_gwbridge").attrs.get("IPAM", {}).get("Config") or []
    except docker.errors.NotFound:
        return []
    problems = []
    for subnet in (c.get("Subnet") for c in configs if c.get("Subnet") and ":" not in c["Subnet"]):
        if any(ipaddress.ip_network(subnet).overlaps(mine) for mine in ours):
            problems.append(
                f"docker_gwbridge ({subnet}) overlaps the TRE's subnets: make it again with a range of its "
                "own before the node joins the swarm (docs/operations.md, More than one host)"
            )
    return problems


def anchor_spec(settings: Settings) -> dict:
    """The anchor: one tiny task per node on the workspace network, hardened like a workspace."""
    container = ContainerSpec(
        settings.image,
        command=["sh", "-c", "grep NoNewPrivs /proc/self/status; exec sleep infinity"],
        user="1000:1000",
        read_only=True,
        cap_drop=["ALL"],
        init=True,
        labels={MANAGED_LABEL: "1"},
    )
    resources = Resources(mem_limit=32 * 1024 * 1024, cpu_limit=50_000_000)
    resources["Limits"]["Pids"] = 16
    return {
        "task_template": TaskTemplate(
            container,
            resources=resources,
            restart_policy=RestartPolicy(condition="any", delay=1_000_000_000),
            networks=[settings.network],
        ),
        "name": anchor_service(settings),
        "mode": ServiceMode("global"),
        "endpoint_spec": EndpointSpec(mode="dnsrr"),
        "labels": {MANAGED_LABEL: "1"},
    }


def ensure_anchor(client: docker.DockerClient, settings: Settings) -> bool:
    try:
        client.api.inspect_service(anchor_service(settings))
        return False
    except docker.errors.NotFound:
        client.api.create_service(**anchor_spec(settings))
        return True


def anchor_reports(client: docker.DockerClient, settings: Settings) -> dict[str, str]:
    """node id -> the running anchor task's last NoNewPrivs report ("1", "0", or "" not yet)."""
    service = anchor_service(settings)
    tasks = client.api.tasks(filters={"service": service, "desired-state": "running"})
    running = {t["NodeID"]: t["ID"] for t in tasks if t.get("Status", {}).get("State") == "running"}
    reports = dict.fromkeys(running, "")
    if not running:
        return reports
    raw = client.api.service_logs(service, stdout=True, stderr=True, details=True, follow=False)
    for line in b"".join(raw).decode(errors="replace").splitlines():
        details, _, text = line.partition(" ")
        fields = dict(kv.split("=", 1) for kv in details.split(",") if "=" in kv)
        node, task = fields.get("com.docker.swarm.node.id"), fields.get("com.docker.swarm.task.id")
        found = ANCHOR_REPORT.search(text)
        if found and node in running and running[node] == task:
            reports[node] = found.group(1)
    return reports


def anchor_problems(
    client: docker.DockerClient, settings: Settings, only_node: str | None = None
) -> list[str]:
    """On a manager: every ready node (or only the node `only_node`) runs an anchor task that
    reports no-new-privileges."""
    try:
        client.api.inspect_service(anchor_service(settings))
    except docker.errors.NotFound:
        return [
            f"the anchor service {anchor_service(settings)} does not exist "
            "(run `tre network setup` on a manager)"
        ]
    reports = anchor_reports(client, settings)
    nodes = {
        n["ID"]: n["Description"]["Hostname"]
        for n in client.api.nodes()
        if n["Status"]["State"] == "ready" and only_node in (None, n["ID"])
    }
    problems = []
    for node_id, hostname in sorted(nodes.items(), key=lambda kv: kv[1]):
        report = reports.get(node_id)
        if report is None:
            problems.append(f"node {hostname}: no anchor task running on the workspace network")
        elif report != "1":
            problems.append(
                f"node {hostname}: its Docker daemon does not set no-new-privileges "
                '(add "no-new-privileges": true to /etc/docker/daemon.json and restart it)'
            )
    return problems


def remove(client: docker.DockerClient, settings: Settings, bridge_gone: Callable[[], bool]) -> list[str]:
    """Remove the anchor, the swarm networks and this node's config networks (in that order)."""
    done = []
    try:
        client.api.remove_service(anchor_service(settings))
        done.append(f"anchor service {anchor_service(settings)}: removed")
    except docker.errors.NotFound:
        pass
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not bridge_gone():
        time.sleep(0.2)
    names = networks(settings)
    # Ended tasks' containers outlive their services for a while, and hold the node's network.
    for name in names:
        for container in client.containers.list(all=True, filters={"network": name}):
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
    for name in names:
        try:
            client.api.remove_network(name)
            done.append(f"swarm network {name}: removed")
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            # After job tasks used it, this engine can keep a stale copy of a swarm network the swarm
            # no longer has (Docker 20.10): removing it then says "not found".
            if "not found" in (exc.explanation or ""):
                continue
            raise SwarmError(
                f"could not remove {name} (stop the workspaces first): {exc.explanation}"
            ) from exc
    for name in map(config_network, names):
        try:
            _remove_when_free(client, name)
            done.append(f"config network {name}: removed")
        except docker.errors.APIError:
            done.append(
                f"config network {name}: kept, still held by this engine's stale copy of the removed swarm "
                "network (Docker 20.10, after job tasks used it); it goes when the node leaves the swarm or "
                "dockerd restarts, and holds no bridge or address meanwhile"
            )
    return done


def _remove_when_free(client: docker.DockerClient, name: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.networks.get(name).remove()
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)  # tasks leave a network a moment after their service is gone


# --- sealed runs and jobs as swarm job services ---------------------------------------------------

ENDED = {"complete", "failed", "shutdown", "rejected", "orphaned", "remove"}
NOT_STARTED = {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"}


class SealedTask:
    """A sealed run (hub.host.sealed) as a one-task replicated-job service on the swarm."""

    def __init__(self, client: docker.DockerClient, service: str) -> None:
        self.client, self.service = client, service

    @classmethod
    def start(cls, client: docker.DockerClient, spec: dict[str, Any], timeout: float = 120) -> SealedTask:
        """Create the service and wait until its task runs (or ended); SwarmError if it never started."""
        try:
            client.api.create_service(**spec)
        except docker.errors.APIError as exc:
            raise SwarmError(exc.explanation or str(exc)) from exc
        run = cls(client, spec["name"])
        deadline = time.monotonic() + timeout
        while True:
            status = run._status()
            state = status.get("State", "new")
            if state not in NOT_STARTED:
                break
            if time.monotonic() > deadline:
                run.remove()
                raise SwarmError(f"its task was still {state} after {timeout:.0f} s")
            time.sleep(0.1)
        if state in ("rejected", "failed") and not status.get("ContainerStatus", {}).get("ContainerID"):
            run.remove()
            raise SwarmError(status.get("Err") or state)
        return run

    @classmethod
    def find(cls, client: docker.DockerClient, service: str) -> SealedTask | None:
        try:
            client.api.inspect_service(service)
        except docker.errors.NotFound:
            return None
        return cls(client, service)

    def _status(self) -> dict[str, Any]:
        tasks = self.client.api.tasks(filters={"service": self.service})
        return max(tasks, key=lambda t: t.get("CreatedAt", ""))["Status"] if tasks else {}

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while True:
            status = self._status()
            if status.get("State") in ENDED:
                code = status.get("ContainerStatus", {}).get("ExitCode")
                return int(code) if code is not None else 125  # 125: it never ran (Docker's code)
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(0.1, timeout))

    def kill(self) -> None:
        container = self._status().get("ContainerStatus", {}).get("ContainerID")
        try:
            self.client.api.kill(container)  # on this node: the service (and its log) stays
        except (docker.errors.APIError, docker.errors.NullResource):
            self.client.api.remove_service(self.service)  # on another node: removing it stops it

    def logs(self, tail: int | None = None) -> str:
        try:
            raw = self.client.api.service_logs(self.service, stdout=True, stderr=True, tail=tail or "all")
            return b"".join(raw).decode(errors="replace")
        except docker.errors.APIError:
            return ""

    def remove(self) -> None:
        container = self._status().get("ContainerStatus", {}).get("ContainerID")
        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_service(self.service)
        # An ended job's container outlives its service for a while: remove it (on this node) now.
        with contextlib.suppress(docker.errors.APIError, docker.errors.NullResource):
            self.client.api.remove_container(container, force=True)
        remove_tmp_volume(self.client, self.service)


def remove_tmp_volume(client: docker.DockerClient, service: str, timeout: float = 30) -> None:
    """A removed service's /tmp volume, once its task has let go of it (best effort)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.api.remove_volume(tmp_volume(service))
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError:
            time.sleep(0.2)


def link_secret(settings: Settings) -> str:
    return read_or_create_secret(settings.link_secret_path).decode()


def link_problems(client: docker.DockerClient, settings: Settings, here: str) -> list[str]:
    """On a manager (node id `here`): the link of every other ready node answers, with the shared
    secret and this TRE's network. A node without one could take a workspace the guard cannot reach."""
    others = [n for n in client.api.nodes() if n["ID"] != here and n["Status"]["State"] == "ready"]
    if not others:
        return []
    secret = link_secret(settings)
    problems = []
    for node in others:
        hostname, address = node["Description"]["Hostname"], node["Status"]["Addr"]
        url = f"http://{address}:{settings.link_port}{LINK_HEALTH}"
        try:
            answer = httpx.get(url, headers={LINK_HEADER: secret}, timeout=2)
            answer.raise_for_status()
            network = answer.json().get("network")
        except (httpx.HTTPError, ValueError) as exc:
            problems.append(
                f"node {hostname}: its guard link does not answer on {address}:{settings.link_port} "
                f"({exc}); run `python -m hub.guard.link` there (docs/operations.md, More than one host)"
            )
            continue
        if network != settings.network:
            problems.append(
                f"node {hostname}: its guard link serves network {network!r}, not {settings.network!r}"
            )
    return problems

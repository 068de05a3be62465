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

import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
from docker.types import (
    ContainerSpec,
    DriverConfig,
    EndpointSpec,
    Mount,
    Resources,
    RestartPolicy,
    ServiceMode,
    TaskTemplate,
)
from docker.utils import parse_bytes

from hub.host.sealed import HOME, WORKSPACE_GID, WORKSPACE_UID
from hub.kernel.settings import Settings

MANAGED_LABEL = "org.tre.managed"
ANCHOR_REPORT = re.compile(r"NoNewPrivs:\s*(\d)")


class SwarmError(RuntimeError):
    """The swarm is not in a state the TRE can use; the message says what to do."""


def config_network(settings: Settings) -> str:
    return f"{settings.network}-config"


def anchor_service(settings: Settings) -> str:
    return f"{settings.network}-anchor"


@dataclass(frozen=True)
class NodeState:
    node_id: str
    hostname: str
    manager: bool


def node_state(client: docker.DockerClient) -> NodeState:
    """This engine's place in the swarm; SwarmError when it is in none."""
    swarm = client.info().get("Swarm") or {}
    if swarm.get("LocalNodeState") != "active":
        raise SwarmError(
            "this Docker engine is not in a swarm: run `docker swarm init` on the first node or "
            "`docker swarm join` on the others (docs/operations.md, More than one host)"
        )
    return NodeState(
        swarm.get("NodeID", ""), client.info().get("Name", ""), bool(swarm.get("ControlAvailable"))
    )


def _docker_cli(args: list[str]) -> None:
    # docker-py cannot create config-only networks or networks built from one: the CLI can.
    run = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60, check=False)
    if run.returncode != 0:
        raise SwarmError(f"docker {' '.join(args[:3])} failed: {run.stderr.strip()}")


def ensure_config_network(
    client: docker.DockerClient, settings: Settings, options: dict[str, str], subnet: str, gateway: str
) -> bool:
    """Create this node's config-only network; True when it was created."""
    name = config_network(settings)
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


def ensure_swarm_network(client: docker.DockerClient, settings: Settings) -> bool:
    """On a manager: the internal swarm network built from the config network; True when created.
    (Docker takes no labels on a network built from a config network.)"""
    try:
        client.networks.get(settings.network)
        return False
    except docker.errors.NotFound:
        pass
    _docker_cli(
        [
            "network", "create", "-d", "bridge", "--scope", "swarm", "--internal", "--attachable",
            "--config-from", config_network(settings), settings.network,
        ]
    )  # fmt: skip
    return True


def swarm_network_problems(client: docker.DockerClient, settings: Settings) -> list[str]:
    try:
        attrs = client.networks.get(settings.network).attrs
    except docker.errors.NotFound:
        return [f"swarm network {settings.network} does not exist (run `tre network setup` on a manager)"]
    problems = []
    if attrs.get("Scope") != "swarm" or attrs.get("Driver") != "bridge":
        problems.append(f"network {settings.network} is not a swarm-scoped bridge network")
    if not attrs.get("Internal"):
        problems.append(f"swarm network {settings.network} is not internal")
    if (attrs.get("ConfigFrom") or {}).get("Network") != config_network(settings):
        problems.append(
            f"swarm network {settings.network} does not take its configuration from "
            f"{config_network(settings)}"
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


def anchor_problems(client: docker.DockerClient, settings: Settings) -> list[str]:
    """On a manager: every ready node runs an anchor task that reports no-new-privileges."""
    try:
        client.api.inspect_service(anchor_service(settings))
    except docker.errors.NotFound:
        return [
            f"the anchor service {anchor_service(settings)} does not exist "
            "(run `tre network setup` on a manager)"
        ]
    reports = anchor_reports(client, settings)
    nodes = {
        n["ID"]: n["Description"]["Hostname"] for n in client.api.nodes() if n["Status"]["State"] == "ready"
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
    """Remove the anchor, the swarm network and this node's config network (in that order)."""
    done = []
    try:
        client.api.remove_service(anchor_service(settings))
        done.append(f"anchor service {anchor_service(settings)}: removed")
    except docker.errors.NotFound:
        pass
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not bridge_gone():
        time.sleep(0.2)
    for name, what in ((settings.network, "swarm network"), (config_network(settings), "config network")):
        for _ in range(50):
            try:
                client.networks.get(name).remove()
                done.append(f"{what} {name}: removed")
                break
            except docker.errors.NotFound:
                break
            except docker.errors.APIError as exc:
                # Tasks leave a network a moment after their service is gone.
                last = exc
                time.sleep(0.2)
        else:
            raise SwarmError(
                f"could not remove {what} {name} (stop the workspaces first): {last.explanation}"
            )
    return done


# --- services running researcher code -------------------------------------------------------------


def tmp_volume(service: str) -> str:
    return f"{service}-tmp"


def tmp_mount(service: str, size: str) -> Mount:
    """A noexec, nosuid tmpfs at /tmp, as a local-driver volume (service tmpfs mounts take no noexec)."""
    options = f"size={size},noexec,nosuid,nodev,mode=1777"
    return Mount(
        "/tmp",  # noqa: S108 - inside the container
        tmp_volume(service),
        type="volume",
        driver_config=DriverConfig("local", {"type": "tmpfs", "device": "tmpfs", "o": options}),
    )


def hardened_service(
    name: str,
    image: str,
    mounts: list[Mount],
    *,
    network: str | None,
    mem: str,
    cpus: float,
    pids: int,
    labels: dict[str, str],
    tmp_size: str = "64m",
    args: list[str] | None = None,
    job: bool = False,
) -> dict[str, Any]:
    """`create_service` arguments for one task of researcher code, with the hardening of
    hub.host.sealed.hardening in a service's terms: uid 1000, no capabilities, read-only root,
    noexec /tmp, init, IPv6 off, pids/memory/CPU limits, never restarted. `job`: run once to the end
    (replicated-job) instead of a server. No network (None) leaves the task with loopback only."""
    container = ContainerSpec(
        image,
        args=args,
        user=f"{WORKSPACE_UID}:{WORKSPACE_GID}",
        workdir=HOME,
        mounts=[*mounts, tmp_mount(name, tmp_size)],
        read_only=True,
        cap_drop=["ALL"],
        init=True,
        sysctls={"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"},
        labels=labels,
    )
    resources = Resources(mem_limit=parse_bytes(mem), cpu_limit=int(cpus * 1e9))
    resources["Limits"]["Pids"] = int(pids)
    return {
        "task_template": TaskTemplate(
            container,
            resources=resources,
            restart_policy=RestartPolicy(condition="none"),
            networks=[network] if network else [],
        ),
        "name": name,
        "mode": ServiceMode("replicated-job" if job else "replicated", replicas=1),
        "endpoint_spec": EndpointSpec(mode="dnsrr"),
        "labels": labels,
    }

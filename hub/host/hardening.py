"""The one definition of the hardening every container that runs researcher code gets.

Workspaces (hub.workspaces.spawner), sealed re-runs and jobs (hub.host.sealed) take it from here, on
either engine: `hardening()` as a container's host configuration on one Docker engine,
`hardened_service()` as a swarm service (TRE_ENGINE=swarm).
"""

from __future__ import annotations

from typing import Any

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

WORKSPACE_UID = 1000
WORKSPACE_GID = 1000
HOME = "/home/jovyan"
NO_IPV6 = {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}


def hardening(mem: str, pids: int, network: str, tmp_size: str = "64m") -> dict[str, Any]:
    """Docker host configuration for a container running researcher code (docker-py's names)."""
    return {
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,noexec,nosuid,nodev,size={tmp_size}"},  # noqa: S108 - in the container
        "pids_limit": int(pids),
        # No swap beyond the memory limit: the limit is the limit.
        "memswap_limit": mem,
        "sysctls": NO_IPV6,
        "network_mode": network,
        "init": True,
        "ipc_mode": "private",
    }


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
    """`create_service` arguments for one task of researcher code, with `hardening` in a
    service's terms: uid 1000, no capabilities, read-only root,
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
        sysctls=NO_IPV6,
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

"""Where a workspace's server is: its container's address on the workspace network, from Docker.

The container (on a swarm: the service's one task) is named by the spawner
(`<prefix>-<user>--<project>`) and labelled with its user and project; an address is used only when
both match. On a swarm, a task on another node is reached through that node's link (hub.guard.link):
the address is the node's, and the guard proves itself to the link with the shared secret.
Addresses are cached briefly and dropped as soon as Docker reports the container stopped or the
service removed (a new container may get the old address).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass

import docker
import docker.errors

from hub.kernel.settings import Settings

log = logging.getLogger("tre.guard")
SERVER_PORT = 8888
CACHE_SECONDS = 30.0


@dataclass(frozen=True)
class Address:
    host: str
    port: int
    container_id: str
    through_link: bool = False  # another swarm node's link, which passes requests to the container


class Upstreams:
    def __init__(self, settings: Settings, remote_nodes: bool = True) -> None:
        self.settings = settings
        self._client = docker.from_env(timeout=10)
        self._cache: dict[str, tuple[float, Address]] = {}
        self._lock = threading.Lock()
        self._this_node: str | None = None
        # The guard on a swarm's manager also finds workspaces on other nodes; a node's link only
        # its own (a worker cannot list the swarm's tasks).
        self.remote_nodes = remote_nodes and settings.engine == "swarm"

    def container_name(self, user: str, project: str) -> str:
        return f"{self.settings.container_prefix}-{user}--{project}"

    def _container(self, user: str, project: str) -> str | None:
        name = self.container_name(user, project)
        if self.settings.engine != "swarm":
            return name
        # On a swarm the name is the service's; its task's container runs on this node (or nowhere).
        found = self._client.api.containers(
            filters={"label": f"com.docker.swarm.service.name={name}", "status": "running"}, quiet=True
        )
        return found[0]["Id"] if len(found) == 1 else None

    def _on_another_node(self, user: str, project: str) -> Address | None:
        """The link of the node that runs the service's task, when that is not this node."""
        try:
            tasks = self._client.api.tasks(
                filters={"service": self.container_name(user, project), "desired-state": "running"}
            )
        except docker.errors.NotFound:  # no such service: the workspace is not running anywhere
            return None
        running = [t for t in tasks if t.get("Status", {}).get("State") == "running"]
        if len(running) != 1 or running[0].get("NodeID") in ("", self._node_id()):
            return None
        task = running[0]
        labels = task["Spec"]["ContainerSpec"].get("Labels") or {}
        if labels.get("org.tre.user") != user or labels.get("org.tre.project") != project:
            log.warning("task %s is not %s/%s's workspace", task["ID"], user, project)
            return None
        container = task["Status"].get("ContainerStatus", {}).get("ContainerID", "")
        address = self._client.api.inspect_node(task["NodeID"])["Status"]["Addr"]
        return Address(address, self.settings.link_port, container, through_link=True)

    def _node_id(self) -> str:
        if self._this_node is None:
            self._this_node = self._client.info()["Swarm"]["NodeID"]
        return self._this_node

    def _inspect(self, user: str, project: str) -> Address | None:
        container = self._container(user, project)
        if container is None:
            return self._on_another_node(user, project) if self.remote_nodes else None
        try:
            attrs = self._client.api.inspect_container(container)
        except docker.errors.NotFound:
            return None
        labels = attrs.get("Config", {}).get("Labels") or {}
        if labels.get("org.tre.user") != user or labels.get("org.tre.project") != project:
            log.warning("container %s is not %s/%s's workspace", attrs.get("Name"), user, project)
            return None
        if not attrs.get("State", {}).get("Running"):
            return None
        net = (attrs.get("NetworkSettings", {}).get("Networks") or {}).get(self.settings.network) or {}
        ip = net.get("IPAddress")
        return Address(ip, SERVER_PORT, attrs["Id"]) if ip else None

    async def address(self, user: str, project: str) -> Address | None:
        name = self.container_name(user, project)
        with self._lock:
            hit = self._cache.get(name)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        found = await asyncio.to_thread(self._inspect, user, project)
        with self._lock:
            if found:
                self._cache[name] = (time.monotonic() + CACHE_SECONDS, found)
            else:
                self._cache.pop(name, None)
        return found

    def forget(self, user: str, project: str) -> None:
        with self._lock:
            self._cache.pop(self.container_name(user, project), None)

    def watch(self) -> threading.Thread:
        """Drop cached addresses as Docker reports containers stopping (a thread: docker-py blocks)."""
        prefix = f"/{self.settings.container_prefix}-"

        def run() -> None:
            while True:
                try:
                    client = docker.from_env(timeout=None)
                    # A service removed: its task on another node stopped (its container's
                    # events are that node's).
                    events = client.events(
                        decode=True,
                        filters={
                            "type": ["container", "service"],
                            "event": ["die", "stop", "destroy", "remove"],
                        },
                    )
                    for event in events:
                        attributes = event.get("Actor", {}).get("Attributes", {})
                        # A swarm task's container is cached under its service's name.
                        name = "/" + (
                            attributes.get("com.docker.swarm.service.name") or attributes.get("name") or ""
                        )
                        if name.startswith(prefix):
                            with self._lock:
                                self._cache.pop(name[1:], None)
                except Exception as exc:  # the engine restarted: reconnect, keep the cache short meanwhile
                    log.warning("Docker events lost (%s); reconnecting", exc)
                    with self._lock:
                        self._cache.clear()
                    time.sleep(2)

        thread = threading.Thread(target=run, name="docker-events", daemon=True)
        thread.start()
        return thread

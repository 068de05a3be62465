"""Where a workspace's server is: its container's address on the workspace network, from Docker.

The container (on a swarm: the service, whose task's container runs on this node) is named by the
spawner (`<prefix>-<user>--<project>`) and labelled with its user and project; an address is used
only when both match. Addresses are cached briefly and dropped
as soon as Docker reports the container stopped (a new container may get the old address).
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


class Upstreams:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client = docker.from_env(timeout=10)
        self._cache: dict[str, tuple[float, Address]] = {}
        self._lock = threading.Lock()

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

    def _inspect(self, user: str, project: str) -> Address | None:
        container = self._container(user, project)
        if container is None:
            return None
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
                    events = client.events(
                        decode=True, filters={"type": "container", "event": ["die", "stop", "destroy"]}
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

"""The TRE spawner: one hardened container per researcher per project (a JupyterHub named server).

Nothing the user sends is trusted: `user_options` are discarded (they are stored and replayed on
restarts), the image is fixed, and every spawn re-asks the registry for a permit (membership,
project open and unexpired, a valid grant, a published release). A refusal is a 403 with the
registry's message and an audit event. What the container gets comes only from the permit:

- the project's current release at /data (read-only bind mount) and the user's per-project home at
  /home/jovyan (read-write), as `Mounts` that fail when the source is missing;
- uid 1000, all capabilities dropped, no-new-privileges, read-only root, a small noexec /tmp,
  pids / memory / CPU limits, IPv6 off, the internal workspace network (refused when the network or
  its firewall is not in place).

The hub is told the server is at the guard (hub.guard), which reaches the container: the proxy's
route, the hub's own checks and every browser request pass it, and no workspace starts while the
guard is not answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
from docker.types import Mount
from dockerspawner import DockerSpawner, SwarmSpawner
from tornado import web
from traitlets import Unicode, default

from hub.host.hardening import WORKSPACE_GID, WORKSPACE_UID, hardened_service, hardening
from hub.host.network import status as network_status
from hub.host.swarm import remove_tmp_volume
from hub.kernel.audit import record
from hub.kernel.audit_actions import AuditAction
from hub.kernel.db import session_scope
from hub.registry.access import AccessDenied, WorkspacePermit, workspace_permit
from hub.workspaces.configured import WithTRESettings

# Docker object names allow [a-zA-Z0-9][a-zA-Z0-9_.-]; usernames and project slugs must fit as they are,
# and hold no "--", so the container name `tre-<user>--<project>` is readable and unambiguous.
SAFE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9_.]|-(?!-)){0,62}$")


def refusal(status: int, message: str) -> web.HTTPError:
    """An HTTPError whose message survives JupyterHub's generic "failed to start" error page."""
    exc = web.HTTPError(status, message)
    exc.jupyterhub_message = message  # type: ignore[attr-defined]
    return exc


class TREWorkspace(WithTRESettings):
    """The TRE's permit check, mounts, limits and network for either engine; nothing user-chosen.

    TRESpawner runs the container on this host's Docker engine, TRESwarmSpawner as a service on a
    swarm (TRE_ENGINE); what the container gets is the same."""

    tmp_size = Unicode("64m", config=True, help="Size of the tmpfs mounted at /tmp (noexec, nosuid).")

    @default("image")
    def _image(self) -> str:
        return self.tre_settings.image

    @default("pull_policy")
    def _never_pull(self) -> str:
        return "never"

    @default("remove")
    def _remove(self) -> bool:
        return True

    @default("use_internal_ip")
    def _internal_ip(self) -> bool:
        return True

    @default("network_name")
    def _network(self) -> str:
        return self.tre_settings.network

    @default("cmd")
    def _cmd(self) -> list[str]:
        return ["jupyterhub-singleuser"]

    @default("disable_user_config")
    def _no_user_config(self) -> bool:
        return True

    @default("options_form")
    def _no_form(self) -> str:
        return ""

    @default("options_from_form")
    def _ignore_form(self):
        return lambda formdata: {}

    @default("prefix")
    def _prefix(self) -> str:
        # Container names are global on a Docker host: a second TRE (or a test hub) on the same
        # engine sets its own prefix so it can never find, reuse or remove this one's containers.
        return self.tre_settings.container_prefix

    @default("name_template")
    def _name(self) -> str:
        return "{prefix}-{raw_username}--{raw_servername}"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._events: list[dict[str, Any]] = []
        self._events_changed = asyncio.Event()
        self._events_done = False

    # --- progress ---------------------------------------------------------------------------------

    def _emit(self, progress: int, message: str) -> None:
        self._events.append({"progress": progress, "message": message})
        self._events_changed.set()

    def _finish_events(self) -> None:
        self._events_done = True
        self._events_changed.set()

    async def progress(self):
        sent = 0
        while True:
            while sent < len(self._events):
                yield self._events[sent]
                sent += 1
            if self._events_done:
                return
            self._events_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._events_changed.wait(), timeout=1)

    # --- permit -----------------------------------------------------------------------------------

    def _permit_sync(self, username: str, project: str, *, starting: bool) -> WorkspacePermit:
        """The permit, or AccessDenied (audited). `starting` audits the start; the second check,
        once the server answers, only its refusal."""
        settings = self.tre_settings
        try:
            with session_scope(settings) as session:
                permit = workspace_permit(session, username, project, settings)
                if starting:
                    record(
                        session,
                        username,
                        AuditAction.WORKSPACE_START,
                        "project",
                        project,
                        {"release": permit.release_number, "container": self.object_name},
                    )
                return permit
        except AccessDenied as exc:
            with session_scope(settings) as session:
                record(
                    session, username, AuditAction.WORKSPACE_REFUSED, "project", project, {"reason": str(exc)}
                )
            raise

    async def _check_permit(self, *, starting: bool = True) -> WorkspacePermit:
        username, project = self.user.name, self.name
        if not project:
            raise refusal(403, "Open a workspace from a project on the home page.")
        if not (SAFE_NAME.match(username) and SAFE_NAME.match(project)):
            raise refusal(403, f"{username!r}/{project!r} is not a valid user/project name.")
        try:
            return await asyncio.to_thread(self._permit_sync, username, project, starting=starting)
        except AccessDenied as exc:
            self.log.warning("workspace refused for %s/%s: %s", username, project, exc)
            raise refusal(403, str(exc)) from None

    async def _check_network(self) -> None:
        st = await asyncio.to_thread(network_status, self.tre_settings)
        if not st.ok:
            self.log.error("workspace network not safe: %s", "; ".join(st.problems))
            raise refusal(
                503,
                "The workspace network is not in place, so no workspace can start. "
                "An administrator must run `tre network setup`.",
            )

    # --- container --------------------------------------------------------------------------------

    def _prepare_home(self, home: Path) -> None:
        """Create the per-project home owned by the container user (egress reads it from the host)."""
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chown(home, WORKSPACE_UID, WORKSPACE_GID)
        home.chmod(0o700)

    def _apply_permit(self, permit: WorkspacePermit) -> None:
        self.image = self.tre_settings.image
        self.mem_limit = str(permit.limits.mem).upper()  # ByteSpecification wants "2G", not "2g"
        self.cpu_limit = float(permit.limits.cpu)
        self._permit = permit
        self._configure_container(permit)

    def _configure_container(self, permit: WorkspacePermit) -> None:
        raise NotImplementedError

    def _labels(self, permit: WorkspacePermit) -> dict[str, str]:
        # The guard only routes to a container whose labels name the user and project it asks for.
        return {
            "org.tre.user": self.user.name,
            "org.tre.project": permit.project_slug,
            "org.tre.release": str(permit.release_number),
        }

    def get_env(self) -> dict[str, str]:  # type: ignore[override]
        env = super().get_env()
        env.pop("JUPYTER_IMAGE_SPEC", None)
        permit = getattr(self, "_permit", None)
        env.update(
            {
                "HOME": "/home/jovyan",
                "TRE_PROJECT": self.name,
                "TRE_MAX_UPLOAD_BYTES": str(self.tre_settings.max_upload_bytes),
            }
        )
        if permit is not None:
            env["TRE_RELEASE"] = str(permit.release_number)
        return env

    @property
    def _guard(self) -> str:
        return f"http://127.0.0.1:{self.tre_settings.guard_port}"

    async def _check_guard(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=3) as client:
                ok = (await client.get(f"{self._guard}/_guard/health")).status_code == 200
        except httpx.HTTPError:
            ok = False
        if not ok:
            self.log.error("the guard is not answering on %s", self._guard)
            raise refusal(
                503,
                "The TRE's guard is not running, so no workspace can start. An administrator must "
                "check the hub's log (the tre-guard service).",
            )

    async def _wait_answering(self) -> None:
        """Poll the server through the guard every 50 ms: the hub's own readiness check backs off
        exponentially (0.2, 0.4, ... 3.2 s), which would add seconds to every start."""
        url = f"{self._guard}/user/{self.user.name}/{self.name}/api"
        deadline = asyncio.get_running_loop().time() + self.http_timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while asyncio.get_running_loop().time() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code < 500:
                        return
                await asyncio.sleep(0.05)

    async def start(self):
        # Stored options are replayed on restart and come from the user: never let them choose anything.
        self.user_options = {}
        self._events, self._events_done = [], False
        try:
            self._emit(10, "Checking your access to this project…")
            await self._check_network()
            await self._check_guard()
            permit = await self._check_permit()
            self._emit(30, f"Mounting release {permit.release_number} of {permit.project_slug} read-only…")
            if not permit.release_dir.is_dir():
                raise refusal(403, f"release {permit.release_number} is missing on disk")
            await asyncio.to_thread(self._prepare_home, permit.home_dir)
            self._apply_permit(permit)
            self._emit(50, "Starting your workspace container…")
            await super().start()
            self._emit(80, "Waiting for JupyterLab…")
            await self._wait_answering()
            # The permit may have gone while the container started (a lead removed the member, say),
            # and the sweeper leaves a pending start alone: check again before handing it over.
            await self._check_permit(starting=False)
            return "127.0.0.1", self.tre_settings.guard_port
        finally:
            self._finish_events()


class TRESpawner(TREWorkspace, DockerSpawner):
    """A workspace container on this host's Docker engine."""

    def _configure_container(self, permit: WorkspacePermit) -> None:
        self.mounts = [
            {"type": "bind", "source": str(permit.release_dir), "target": "/data", "read_only": True},
            {"type": "bind", "source": str(permit.home_dir), "target": "/home/jovyan", "read_only": False},
        ]
        # The same hardening as every container researcher code runs in (hub.host.sealed).
        self.extra_host_config = hardening(
            self.mem_limit, permit.limits.pids, self.tre_settings.network, self.tmp_size
        )
        self.extra_create_kwargs = {
            "user": f"{WORKSPACE_UID}:{WORKSPACE_GID}",
            "working_dir": "/home/jovyan",
            "labels": self._labels(permit),
        }


class TRESwarmSpawner(TREWorkspace, SwarmSpawner):
    """A workspace as a one-task service on a Docker Swarm (TRE_ENGINE=swarm), hardened as above.

    A service takes read-only root, cap-drop, init, sysctls and pids/memory/CPU limits itself. Its
    tmpfs mounts take no noexec (Docker 20.10), so /tmp is a local-driver volume of type tmpfs, which
    does; no-new-privileges is each node's daemon setting, which the anchor service checks
    (hub.host.swarm). The task joins the swarm-scoped workspace bridge of its node."""

    def _configure_container(self, permit: WorkspacePermit) -> None:
        # Any ready node: the guard reaches a workspace on another node through that node's link,
        # and the workspace the hub API through the link's relay (hub.guard.link); no workspace
        # starts while a node's link is not answering (hub.host.swarm.link_problems).
        self._service_spec = hardened_service(
            self.object_name,
            self.tre_settings.image,
            [
                Mount("/data", str(permit.release_dir), type="bind", read_only=True),
                Mount("/home/jovyan", str(permit.home_dir), type="bind", read_only=False),
            ],
            network=self.tre_settings.network,
            mem=self.mem_limit,
            cpus=self.cpu_limit,
            pids=permit.limits.pids,
            labels=self._labels(permit),
            tmp_size=self.tmp_size,
        )

    async def create_object(self) -> dict:
        spec = self._service_spec
        container = spec["task_template"]["ContainerSpec"]
        container["Args"] = await self.get_command()
        container["Env"] = [f"{k}={v}" for k, v in self.get_env().items()]
        return await self.docker("create_service", **spec)

    async def start_object(self) -> None:
        """Until the service's task runs: polled every 0.1 s (SwarmSpawner backs off from 1 s)."""
        deadline = asyncio.get_running_loop().time() + self.start_timeout
        while asyncio.get_running_loop().time() < deadline:
            task = await self.get_task()
            state = (task or {}).get("Status", {}).get("State", "")
            if state == "running":
                return
            if state in ("failed", "rejected", "shutdown", "complete", "orphaned"):
                raise RuntimeError(f"workspace task {state}: {task['Status'].get('Err', '')}")
            await asyncio.sleep(0.1)
        raise TimeoutError(f"the workspace task did not start within {self.start_timeout} s")

    async def remove_object(self) -> None:
        await super().remove_object()
        # The tmpfs volume outlives the service; it holds nothing once its task has stopped.
        await asyncio.to_thread(remove_tmp_volume, docker.from_env(timeout=10), self.object_name)

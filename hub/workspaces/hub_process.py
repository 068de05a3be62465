"""`tre hub` as a child process in its own session: started with exactly the given settings, waited
for until the hub API and the egress service answer, and stopped with everything it started.

The demo (`make demo`) and the test harness run the TRE through this one class.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import httpx

from hub.host import swarm, tls
from hub.kernel.settings import Settings
from hub.workspaces.hub_api import admin_token
from hub.workspaces.jupyterhub_config import CHECKOUT
from hub.workspaces.supervisor import stop_leftover_proxy

HUB_LOG = "hub.log"
HUB_START_TIMEOUT = 120


class HubStartError(RuntimeError):
    """The hub did not come up; the message ends with its log."""


def remove_workspaces(settings: Settings) -> list[str]:
    """Force-remove every container on the settings' workspace network and every job container of
    this TRE (they have no network; their names are <prefix>-job-<id>), after the hub is gone."""

    def containers(*filters: str) -> list[str]:
        ps = ["docker", "ps", "-a", "--format", "{{.ID}} {{.Names}}"]
        for f in filters:
            ps += ["--filter", f]
        out = subprocess.run(ps, capture_output=True, text=True, check=False).stdout
        return [line.split() for line in out.splitlines() if line.strip()]

    jobs = f"{settings.container_prefix}-job-"
    if settings.engine == "swarm":
        # Workspace services (not the network's anchor, which the network's teardown removes).
        ls = ["docker", "service", "ls", "--filter", "label=org.tre.user", "--format", "{{.Name}}"]
        names = subprocess.run(ls, capture_output=True, text=True, check=False).stdout.split()
        services = [n for n in names if n.startswith(f"{settings.container_prefix}-")]
        if services:
            subprocess.run(["docker", "service", "rm", *services], capture_output=True, check=False)
            client = docker.from_env(timeout=30)
            for name in services:
                swarm.remove_tmp_volume(client, name)
    anchor = swarm.anchor_service(settings)
    found = [
        cid for cid, name in containers(f"network={settings.network}") if not name.startswith(f"{anchor}.")
    ]
    found += [cid for cid, name in containers("label=org.tre.job") if name.startswith(jobs)]
    if found:
        subprocess.run(["docker", "rm", "-f", *found], capture_output=True, check=False)
    return found


class HubProcess:
    """`tre hub` (its supervisor, the proxy, the hub and its services) for one set of settings."""

    def __init__(self, settings: Settings, log: Path | None = None) -> None:
        self.settings = settings
        self.url = settings.public_url
        self.log = log or settings.root / HUB_LOG
        self.proc: subprocess.Popen[bytes] | None = None

    def environment(self) -> dict[str, str]:
        """This process's environment without its TRE_* values, plus exactly the settings' ones."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("TRE_")}
        node_bin = CHECKOUT / ".node/node_modules/.bin"
        return {**inherited, **self.settings.to_env(), "PATH": f"{node_bin}:{os.environ.get('PATH', '')}"}

    def tail(self, lines: int = 30) -> str:
        if not self.log.is_file():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def start(self, timeout: float = HUB_START_TIMEOUT) -> None:
        token = admin_token(self.settings)
        tre = Path(sys.executable).parent / "tre"
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                [str(tre), "hub"],
                env=self.environment(),
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        headers = {"Authorization": f"token {token}"}
        # Ready means reachable as people reach it: over TLS, through the proxy, on each origin.
        with tls.client(self.settings, timeout=5, headers=headers) as client:
            while True:
                if self.proc.poll() is not None:
                    raise HubStartError(
                        f"tre hub exited with {self.proc.returncode}; its log ends:\n{self.tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    hub = client.get(f"{self.url}/hub/api/users")
                    egress = client.get(self.settings.service_url("egress") + "login")
                    if hub.status_code == 200 and egress.status_code < 500:
                        return
                if time.monotonic() > deadline:
                    self.stop()
                    raise HubStartError(
                        f"the hub was not ready after {timeout:.0f}s; its log ends:\n{self.tail()}"
                    )
                time.sleep(0.3)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 60, keep_workspaces: bool = False) -> None:
        """SIGTERM `tre hub` (it stops the hub, proxy and services), then remove what is left: the
        workspaces too, unless `keep_workspaces` (a restart, as `systemctl restart` does it)."""
        proc = self.proc
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
            # The hub shares the supervisor's session; none may outlive it (services die with the hub).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            stop_leftover_proxy(self.settings.state_dir)
            self.proc = None
        if not keep_workspaces:
            remove_workspaces(self.settings)

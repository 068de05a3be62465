"""The hub's REST API as the TRE's own tools use it: which workspaces run, and stopping one.

The operator's side (the command line, the portal) calls it with the `tre-admin` service token on
the hub API's own address (the bridge gateway); the sweeper service with the token and URL
JupyterHub hands it. A hub that is not running has no workspaces to stop: `HubDown` says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime

import httpx

from hub.host import network
from hub.host.network import gateway_ip
from hub.kernel.secrets import read_or_create_secret
from hub.kernel.settings import Settings

ADMIN_TOKEN_FILE = "hub-admin-token"  # noqa: S105 - a file name, not a secret


def admin_token(settings: Settings) -> str:
    """The `tre` command line's API token for the hub (0600 in the state directory)."""
    return read_or_create_secret(settings.state_dir / ADMIN_TOKEN_FILE).decode()


class HubDown(RuntimeError):
    """The hub did not answer: nothing is running that could be stopped."""


@dataclass(frozen=True)
class RunningServer:
    user: str
    project: str  # the named server is the project
    started: datetime | None
    starting: bool = False  # its spawn is still pending


class HubAPI:
    def __init__(self, url: str, token: str, timeout: float = 30) -> None:
        self.url = url.rstrip("/")
        limits = httpx.Timeout(timeout, connect=3)
        self._client = httpx.Client(headers={"Authorization": f"token {token}"}, timeout=limits)

    @classmethod
    def for_operator(cls, settings: Settings) -> HubAPI:
        """The hub API on the bridge gateway; HubDown at once where the bridge is not even there."""
        if not network.bridge_has_gateway(network.plan(settings)):
            raise HubDown(f"the workspace bridge {settings.bridge} is not up, so no hub is running")
        return cls(f"http://{gateway_ip(settings)}:{settings.hub_port}/hub/api", admin_token(settings))

    @classmethod
    def for_service(cls) -> HubAPI:
        """Inside a JupyterHub managed service: the API URL and token JupyterHub gave it."""
        return cls(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"])

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HubAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        try:
            return self._client.request(method, self.url + path, **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError as exc:
            raise HubDown(f"the hub API at {self.url} does not answer ({exc})") from exc

    def running(self) -> list[RunningServer]:
        """Every named server that is running or starting."""
        r = self._request("GET", "/users", params={"state": "active"})
        r.raise_for_status()
        out = []
        for user in r.json():
            for name, server in (user.get("servers") or {}).items():
                if name:
                    started = server.get("started")
                    out.append(
                        RunningServer(
                            user["name"],
                            name,
                            datetime.fromisoformat(started) if started else None,
                            starting=server.get("pending") == "spawn",
                        )
                    )
        return out

    def stop(self, user: str, project: str) -> bool:
        """Ask the hub to stop a workspace; False if it was not running."""
        r = self._request("DELETE", f"/users/{user}/servers/{project}")
        if r.status_code == 404:
            return False
        r.raise_for_status()
        return True

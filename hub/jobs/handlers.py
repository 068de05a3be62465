"""The jobs API on the hub: /hub/api/tre/jobs, for `tre_notebook.jobs` inside a workspace.

It lives in the hub because the hub's API port is the one host port the firewall lets a workspace
reach (JupyterHub calls extra handlers deprecated in favour of services, but a service would need a
second open port). A call must carry a workspace's own server token: that token is scoped to one
server, `access:servers!server=<user>/<project>`, so the project is the token's, never one the
caller names. A user's full token, a browser cookie or another server's token gets 403.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from hub.jobs.rules import JobRefused
from hub.jobs.service import Jobs
from hub.kernel.settings import Settings

NOT_A_WORKSPACE = "Jobs are submitted from inside a workspace, with its own token (tre_notebook.jobs)."


class _JobsHandler(APIHandler):
    def initialize(self, settings: Settings) -> None:
        self.jobs = Jobs(settings)

    def workspace(self) -> tuple[str, str]:
        """(user, project) of the workspace whose server token made this call."""
        user = self.current_user
        if user is None or getattr(user, "kind", None) != "user":
            raise web.HTTPError(403, NOT_A_WORKSPACE)
        servers = self.parsed_scopes.get("access:servers")
        if not isinstance(servers, dict) or set(servers) != {"server"} or len(servers["server"]) != 1:
            raise web.HTTPError(403, NOT_A_WORKSPACE)
        owner, _, project = next(iter(servers["server"])).partition("/")
        if owner != user.name or not project:
            raise web.HTTPError(403, NOT_A_WORKSPACE)
        return owner, project

    async def call(self, fn: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args)
        except JobRefused as exc:
            raise web.HTTPError(exc.status, str(exc)) from None

    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "The body is not JSON.") from None
        if not isinstance(data, dict):
            raise web.HTTPError(400, "The body is a JSON object.")
        return data


class JobListHandler(_JobsHandler):
    async def get(self) -> None:
        who, project = self.workspace()
        self.write({"jobs": await self.call(self.jobs.list, who, project)})

    async def post(self) -> None:
        who, project = self.workspace()
        data = self.body()
        job = await self.call(
            self.jobs.submit, who, project, str(data.get("notebook", "")), data.get("parameters")
        )
        self.set_status(201)
        self.write(job)


class JobHandler(_JobsHandler):
    async def get(self, job_id: str) -> None:
        who, project = self.workspace()
        self.write(await self.call(self.jobs.get, who, project, int(job_id)))


class JobCrateHandler(_JobsHandler):
    async def get(self, job_id: str) -> None:
        who, project = self.workspace()
        self.write(await self.call(self.jobs.crate, who, project, int(job_id)))


class JobCancelHandler(_JobsHandler):
    async def post(self, job_id: str) -> None:
        who, project = self.workspace()
        self.write(await self.call(self.jobs.cancel, who, project, int(job_id)))


def job_handlers(settings: Settings) -> list[tuple[str, type, dict[str, Any]]]:
    """For c.JupyterHub.extra_handlers (JupyterHub puts them under /hub)."""
    kwargs = {"settings": settings}
    return [
        (r"/api/tre/jobs", JobListHandler, kwargs),
        (r"/api/tre/jobs/([0-9]{1,12})", JobHandler, kwargs),
        (r"/api/tre/jobs/([0-9]{1,12})/cancel", JobCancelHandler, kwargs),
        (r"/api/tre/jobs/([0-9]{1,12})/crate", JobCrateHandler, kwargs),
    ]

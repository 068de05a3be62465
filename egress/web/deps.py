"""What the routers get injected (FastAPI dependencies): the commands, the queries, the page renderer.

`create_app` builds one `Services` per application and keeps it on `app.state`; routers reach it
through these dependencies only, so a test can swap any of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends, Path, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from egress.review.base import EgressContext
from egress.review.commands import EgressCommands
from egress.review.queries import EgressQueries
from egress.review.reruns import EgressReruns
from egress.review.workflow import FileKind
from hub.kernel.db import MAX_ROW_ID
from hub.registry.vocabulary import MEMBER_ROLES, Role
from hub.web.sso import Identity

Id = Annotated[int, Path(ge=1, lt=MAX_ROW_ID)]


class RequestOp(StrEnum):
    """What a person can do to a request from its page or the API (beyond votes and comments)."""

    SUBMIT = "submit"
    WITHDRAW = "withdraw"
    RETURN = "return"
    REJECT = "reject"
    RELEASE = "release"
    REVOKE = "revoke"


@dataclass
class Services:
    ctx: EgressContext
    commands: EgressCommands
    queries: EgressQueries
    templates: Jinja2Templates
    base: str  # the service prefix without its trailing slash, e.g. /services/egress
    reruns: EgressReruns

    def perform(
        self, who: str, rid: int, op: RequestOp, comment: str = "", tasks: BackgroundTasks | None = None
    ) -> None:
        c = self.commands
        match op:
            case RequestOp.SUBMIT:
                c.submit(who, rid)
                if tasks is not None:
                    self._rerun_on_submit(who, rid, tasks)
            case RequestOp.WITHDRAW:
                c.withdraw(who, rid)
            case RequestOp.RETURN:
                c.return_request(who, rid, comment)
            case RequestOp.REJECT:
                c.reject_request(who, rid, comment)
            case RequestOp.RELEASE:
                c.release(who, rid)
            case RequestOp.REVOKE:
                c.revoke(who, rid, comment)

    def _rerun_on_submit(self, who: str, rid: int, tasks: BackgroundTasks) -> None:
        """A submitted request with its notebook is re-run at once, so checkers find the result."""
        files = self.queries.request_view(who, rid)["files"]
        if sum(f["kind"] == FileKind.SUPPORTING and f["name"].endswith(".ipynb") for f in files) != 1:
            return
        rerun_id = self.reruns.start(who, rid)
        tasks.add_task(self.reruns.execute, rerun_id)

    def page(self, request: Request, me: Identity, name: str, **ctx: Any) -> HTMLResponse:
        who = self.queries.whoami(me.username)
        roles = {r for rs in who["projects"].values() for r in rs}
        nav = {"checker": Role.CHECKER in roles, "lead": Role.LEAD in roles, "admin": who["is_admin"]}
        return self.templates.TemplateResponse(request, name, {"me": who, "csrf": me.csrf, "nav": nav, **ctx})

    def author_projects(self, username: str) -> list[str]:
        who = self.queries.whoami(username)
        return sorted(p for p, r in who["projects"].items() if MEMBER_ROLES & set(r))


def services(request: Request) -> Services:
    return request.app.state.services


Svc = Annotated[Services, Depends(services)]

"""What administrators do to a project in the portal: checkers, limits and byte budget, disclosure
rules, suspension and closure, and the audit log.

Each form calls the same operation as the `tre` command line (the registry's rules decide: only
administrators change limits, rules and status; checkers are assigned by administrators or
custodians who do not work on the project), and taking access away goes through
hub.enforcement, which stops the affected workspaces at once.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from hub import registry as reg
from hub.enforcement.withdraw import WithdrawalIncomplete, close_project, suspend_project
from hub.kernel.audit import read_events
from hub.kernel.db import session_scope
from hub.portal.pages import NotFound, change_then_back, slug_or_404
from hub.portal.projects import LIMIT_FIELDS, RULE_FIELDS
from hub.registry.errors import RegistryError
from hub.registry.lookup import find_user
from hub.registry.permissions import NotAllowed
from hub.registry.vocabulary import Role, StatusChange
from hub.web.security import FormMe, Me
from hub.workspaces.hub_api import HubDown

router = APIRouter(include_in_schema=False)
REFUSED = (RegistryError, NotAllowed, NotFound, ValueError)


@router.post("/projects/{slug}/checkers")
def assign_checker(
    request: Request, me: FormMe, slug: str, username: Annotated[str, Form()] = ""
) -> Response:
    slug = slug_or_404(slug)

    def assign() -> None:
        with session_scope(request.app.state.settings) as s:
            reg.add_member(
                s, me.username, slug, slug_or_404(username.strip().lower(), "user"), role=Role.CHECKER
            )

    return change_then_back(request, me, slug, assign, REFUSED)


@router.post("/projects/{slug}/checkers/{username}/remove")
def remove_checker(request: Request, me: FormMe, slug: str, username: str) -> Response:
    slug, username = slug_or_404(slug), slug_or_404(username, "checker")

    def remove() -> None:
        with session_scope(request.app.state.settings) as s:
            reg.remove_member(s, me.username, slug, username, role=Role.CHECKER)

    return change_then_back(request, me, slug, remove, REFUSED)


def _numbers(form: dict[str, str], fields: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in fields:
        value = form.get(key, "").strip()
        if not value:
            continue
        if key == "mem":
            out[key] = value
            continue
        try:
            out[key] = (
                float(value) if "." in value or key in ("cpu", "dominance_k", "p_percent") else int(value)
            )
        except ValueError:
            raise RegistryError(f"{fields[key].lower()}: {value!r} is not a number") from None
    return out


@router.post("/projects/{slug}/limits")
async def set_limits(request: Request, me: FormMe, slug: str) -> Response:
    slug = slug_or_404(slug)
    form = {k: str(v) for k, v in (await request.form()).items()}

    def change() -> None:
        with session_scope(request.app.state.settings) as s:
            reg.set_project_limits(s, me.username, slug, **_numbers(form, LIMIT_FIELDS))

    return change_then_back(request, me, slug, change, REFUSED)


@router.post("/projects/{slug}/rules")
async def set_rules(request: Request, me: FormMe, slug: str) -> Response:
    slug = slug_or_404(slug)
    form = {k: str(v) for k, v in (await request.form()).items()}

    def change() -> None:
        overrides = _numbers(form, RULE_FIELDS)
        if not overrides:
            raise RegistryError("give at least one rule setting")
        with session_scope(request.app.state.settings) as s:
            reg.set_project_sdc_rules(s, me.username, slug, overrides)

    return change_then_back(request, me, slug, change, REFUSED)


@router.post("/projects/{slug}/status")
def set_status(
    request: Request,
    me: FormMe,
    slug: str,
    change: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    settings = request.app.state.settings
    slug = slug_or_404(slug)

    def apply() -> None:
        if change == StatusChange.SUSPEND:
            suspend_project(settings, me.username, slug, reason)  # stops its workspaces now
        elif change == StatusChange.CLOSE:
            close_project(settings, me.username, slug, reason)  # and deletes its homes and data
        else:
            with session_scope(settings) as s:
                reg.change_project_status(s, me.username, slug, change, reason)

    return change_then_back(request, me, slug, apply, (*REFUSED, WithdrawalIncomplete, HubDown))


@router.get("/audit")
def audit_log(
    request: Request, me: Me, actor: str = "", action: str = "", object_id: str = "", offset: int = 0
) -> HTMLResponse:
    with session_scope(request.app.state.settings, readonly=True) as s:
        user = find_user(s, me.username)
        if user is None or not user.is_admin or user.disabled:
            raise NotAllowed("Only administrators read the audit log.")
        events = read_events(s, actor.strip(), action.strip(), object_id.strip(), 100, max(0, offset))
    return request.app.state.templates.TemplateResponse(
        request,
        "audit.html",
        {
            "me": me,
            "events": events,
            "filters": {"actor": actor, "action": action, "object_id": object_id},
            "offset": max(0, offset),
            "title": "Audit log",
        },
    )

"""The portal's pages: home (what this person can do, by role) and the dataset catalogue."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from hub import registry as reg
from hub.enforcement.withdraw import remove_member
from hub.kernel.db import session_scope
from hub.kernel.settings import Settings
from hub.portal.projects import LIMIT_FIELDS, RULE_FIELDS, project_page, require_lead, stop_workspace
from hub.registry.access import user_projects
from hub.registry.catalogue import (
    Publisher,
    catalog_jsonld,
    catalog_turtle,
    catalogue_entries,
    catalogue_entry,
)
from hub.registry.errors import RegistryError
from hub.registry.models import Project, User
from hub.registry.vocabulary import SLUG_RE, is_slug
from hub.web.security import FormMe, Me
from hub.workspaces.hub_api import HubDown

router = APIRouter(include_in_schema=False)


class NotFound(Exception):
    """A page about something that does not exist (or that this person may not see)."""


def _page(request: Request, template: str, me: Me, **context: object) -> HTMLResponse:
    return request.app.state.templates.TemplateResponse(request, template, {"me": me, **context})


# -- pages ---------------------------------------------------------------------------------------


@router.get("/")
def home(request: Request, me: Me) -> HTMLResponse:
    with session_scope(request.app.state.settings, readonly=True) as s:
        user = s.execute(select(User).where(User.username == me.username)).scalar_one_or_none()
        projects = user_projects(s, me.username)
        roles = {
            "admin": bool(user and user.is_admin and not user.disabled),
            "custodian": bool(user and user.is_custodian and not user.disabled),
        }
        # Administrators manage every project: each one's page is a click away.
        every = (
            [
                (p.slug, p.title, p.status, p.lead.username)
                for p in s.execute(select(Project).order_by(Project.slug)).scalars()
            ]
            if roles["admin"]
            else []
        )
    return _page(request, "home.html", me, projects=projects, roles=roles, every=every, title="Home")


@router.get("/catalogue")
def catalogue(request: Request, me: Me) -> HTMLResponse:
    with session_scope(request.app.state.settings, readonly=True) as s:
        entries = catalogue_entries(s)
    return _page(request, "catalogue.html", me, entries=entries, title="Dataset catalogue")


def _catalogue_doc(settings: Settings) -> dict:
    with session_scope(settings, readonly=True) as s:
        return catalog_jsonld(s, settings.public_url + "/", publisher=Publisher.from_settings(settings))


@router.get("/catalogue.jsonld")
def catalogue_export(request: Request, me: Me) -> Response:
    doc = _catalogue_doc(request.app.state.settings)
    return Response(
        json.dumps(doc, indent=2, ensure_ascii=False),
        media_type="application/ld+json",
        headers={"Content-Disposition": 'attachment; filename="catalogue.jsonld"'},
    )


@router.get("/catalogue.ttl")
def catalogue_turtle(request: Request, me: Me) -> Response:
    doc = _catalogue_doc(request.app.state.settings)
    return Response(
        catalog_turtle(doc),
        media_type="text/turtle",
        headers={"Content-Disposition": 'attachment; filename="catalogue.ttl"'},
    )


@router.get("/catalogue/{name}")
def dataset(request: Request, me: Me, name: str) -> HTMLResponse:
    if not SLUG_RE.match(name):  # names are slugs: anything else cannot be a dataset
        raise NotFound(f"There is no dataset {name!r} in the catalogue.")
    with session_scope(request.app.state.settings, readonly=True) as s:
        entry = catalogue_entry(s, name)
    if entry is None:
        raise NotFound(f"There is no dataset {name!r} in the catalogue.")
    return _page(request, "dataset.html", me, entry=entry, title=entry.title)


# -- a project, as its lead manages it -----------------------------------------------------------


def slug_or_404(value: str, what: str = "project") -> str:
    if not is_slug(value):  # opaque ids and slugs only: nothing else names a project or a person
        raise NotFound(f"There is no {what} {value!r}.")
    return value


def _project_page(request: Request, me: Me, slug: str, error: str = "", status: int = 200) -> HTMLResponse:
    page = project_page(request.app.state.settings, me.username, slug)
    return request.app.state.templates.TemplateResponse(
        request,
        "project.html",
        {
            "me": me,
            "p": page,
            "error": error,
            "title": page.title,
            "limit_fields": LIMIT_FIELDS,
            "rule_fields": RULE_FIELDS,
        },
        status_code=status,
    )


@router.get("/projects/{slug}")
def project(request: Request, me: Me, slug: str) -> HTMLResponse:
    return _project_page(request, me, slug_or_404(slug))


def change_then_back(
    request: Request, me: Me, slug: str, change: Callable[[], object], refused: tuple
) -> Response:
    """Make a change to a project, then back to its page; a refusal is shown on the page, unsaved."""
    try:
        change()
    except refused as exc:
        status = 503 if isinstance(exc, HubDown) else 422
        return _project_page(request, me, slug, str(exc), status)
    return RedirectResponse(f"{request.app.state.base}/projects/{slug}", status_code=303)


@router.post("/projects/{slug}/members")
def add_researcher(
    request: Request, me: FormMe, slug: str, username: Annotated[str, Form()] = ""
) -> Response:
    settings = request.app.state.settings
    slug = slug_or_404(slug)
    require_lead(settings, me.username, slug)

    def add() -> None:
        with session_scope(settings) as s:
            reg.add_member(s, me.username, slug, slug_or_404(username.strip().lower(), "user"))

    return change_then_back(request, me, slug, add, (RegistryError, NotFound))


@router.post("/projects/{slug}/members/{username}/remove")
def remove_researcher(request: Request, me: FormMe, slug: str, username: str) -> Response:
    settings = request.app.state.settings
    slug, username = slug_or_404(slug), slug_or_404(username, "member")
    require_lead(settings, me.username, slug)
    # The same operation as `tre project member remove`: it stops her workspace at once.
    return change_then_back(
        request, me, slug, lambda: remove_member(settings, me.username, slug, username), (RegistryError,)
    )


@router.post("/projects/{slug}/workspaces/{username}/stop")
def stop(request: Request, me: FormMe, slug: str, username: str) -> Response:
    settings = request.app.state.settings
    slug, username = slug_or_404(slug), slug_or_404(username, "member")
    return change_then_back(
        request, me, slug, lambda: stop_workspace(settings, me.username, slug, username), (HubDown,)
    )

"""The portal's FastAPI application: pages under the JupyterHub service prefix (/services/portal/)."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub.kernel.audit import record
from hub.kernel.audit_actions import AuditAction
from hub.kernel.db import session_scope
from hub.kernel.lifecycle import die_with_parent
from hub.kernel.settings import Settings, get_settings
from hub.portal import admin, applications, pages
from hub.portal.projects import NotYourProject
from hub.registry import NotAllowed
from hub.registry.applications import MAX_ATTACHMENT_BYTES, NoSuchApplication, NoSuchPermit
from hub.registry.errors import RegistryError
from hub.web import STATIC
from hub.web.security import BodyLimit, CSRFRefused, SecurityHeaders
from hub.web.serving import limited_threads, prepare_to_serve
from hub.web.sso import HubSSO, NeedLogin, need_login_response, sign_in_routes

HERE = Path(__file__).parent
DEFAULT_PREFIX = "/services/portal/"


def service_app() -> FastAPI:
    """The portal as JupyterHub runs it, in each worker process: JupyterHub hands a service its
    prefix and public address in JUPYTERHUB_* variables."""
    die_with_parent()  # a worker never outlives the process that supervises it
    app = create_app(
        get_settings(),
        prefix=os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or DEFAULT_PREFIX,
        public_url=os.environ.get("JUPYTERHUB_PUBLIC_URL", ""),
    )
    prepare_to_serve(app, app.state.templates, app.state.settings)
    return app


def create_app(
    settings: Settings, prefix: str | None = None, sso: bool = True, public_url: str = ""
) -> FastAPI:
    """`sso=False` leaves sign-in unconfigured (tests then override the identity)."""
    base = (prefix or DEFAULT_PREFIX).rstrip("/")
    app = FastAPI(
        title="TRE portal",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=limited_threads(settings.portal_threads),
    )
    app.state.settings = settings
    app.state.base = base
    app.state.sso = HubSSO(settings, base + "/", public_url, service="portal") if sso else None

    def audit_refusal(who: str, path: str, why: str) -> None:
        with session_scope(settings) as s:
            record(s, who, AuditAction.PORTAL_REFUSED_CSRF, "http", path, {"reason": why})

    app.state.audit_refusal = audit_refusal
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(
        prefix=base,
        hub_url=settings.public_url + "/hub/home",
        egress_url=settings.service_url("egress"),
    )
    app.state.templates = templates
    app.mount(f"{base}/static", StaticFiles(directory=str(STATIC)), name="static")
    app.add_middleware(SecurityHeaders)
    # The largest body a page posts is a protocol PDF with its form.
    app.add_middleware(
        BodyLimit,
        max_bytes=MAX_ATTACHMENT_BYTES + 1024 * 1024,
        hint="A study protocol may be at most 5 MiB: attach a smaller PDF.",
    )
    app.include_router(sign_in_routes(base), prefix=base)
    app.include_router(pages.router, prefix=base)
    app.include_router(applications.router, prefix=base)
    app.include_router(admin.router, prefix=base)

    def error_page(request: Request, status: int, message: str) -> Response:
        return templates.TemplateResponse(
            request, "error.html", {"status": status, "message": message, "me": None}, status_code=status
        )

    @app.exception_handler(NeedLogin)
    async def need_login(request: Request, exc: NeedLogin) -> Response:
        return need_login_response(request, exc, base, error_page, api=False)

    @app.exception_handler(NotAllowed)
    async def not_allowed(request: Request, exc: NotAllowed) -> Response:
        # Things this person may not see get the same answer as things that do not exist.
        unseen = isinstance(exc, (NotYourProject, NoSuchApplication, NoSuchPermit))
        return error_page(request, 404 if unseen else 403, str(exc))

    @app.exception_handler(RegistryError)
    async def registry_error(request: Request, exc: RegistryError) -> Response:
        return error_page(request, 404 if "no project" in str(exc) else 422, str(exc))

    @app.exception_handler(pages.NotFound)
    async def not_found(request: Request, exc: pages.NotFound) -> Response:
        return error_page(request, 404, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error_page(request, 404, "There is no such page in the portal.")
        return error_page(request, exc.status_code, str(exc.detail))

    @app.exception_handler(CSRFRefused)
    async def csrf_refused(request: Request, exc: CSRFRefused) -> Response:
        return error_page(request, 403, f"Refused: {exc}. Reload the page and try again.")

    @app.exception_handler(RequestValidationError)
    async def invalid_input(request: Request, exc: RequestValidationError) -> Response:
        return error_page(request, 422, "That page was not understood; go back and try again.")

    return app

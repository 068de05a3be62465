"""The egress web service: server-rendered pages and a JSON API over egress.review.

`create_app` wires the parts: the routers (`pages`, `api`), the renderers (`render`), the headers,
CSRF rules and sign-in through the hub (hub.web, which every TRE web service shares); the commands and
queries reach the routers as FastAPI dependencies (`deps`). Everything hangs under the JupyterHub
service prefix (default /services/egress/).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from egress.review.base import EgressContext
from egress.review.commands import EgressCommands
from egress.review.errors import EgressError
from egress.review.queries import EgressQueries
from egress.review.reruns import EgressReruns
from egress.review.storage import Refused
from egress.web import api, pages
from egress.web.deps import Services
from hub.kernel.audit_actions import AuditAction
from hub.kernel.db import upgrade
from hub.kernel.settings import Settings
from hub.kernel.signing import InvalidRecord
from hub.web import STATIC
from hub.web.security import BodyLimit, CSRFRefused, SecurityHeaders
from hub.web.sso import HubSSO, NeedLogin, need_login_response, sign_in_routes

HERE = Path(__file__).parent
DEFAULT_PREFIX = "/services/egress/"


def create_app(
    settings: Settings, prefix: str | None = None, sso: bool = True, public_url: str = ""
) -> FastAPI:
    """The egress app. `sso=False` leaves sign-in unconfigured (tests then override the identity);
    `public_url` is the service's public URL (JupyterHub's JUPYTERHUB_PUBLIC_URL)."""
    prefix = (prefix or DEFAULT_PREFIX).rstrip("/") + "/"
    base = prefix.rstrip("/")
    upgrade(settings)
    ctx = EgressContext(settings)
    commands = EgressCommands(ctx)
    commands.recover()
    ctx.signer.ensure_key()

    app = FastAPI(
        title="TRE egress review",
        version="1.0",
        openapi_url=f"{base}/api/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.state.sso = HubSSO(settings, prefix, public_url, service="egress") if sso else None
    app.state.audit_refusal = lambda who, path, why: ctx.refusal(
        who, AuditAction.EGRESS_REFUSED_CSRF, "http", path, why
    )
    templates.env.globals["prefix"] = base
    templates.env.globals["portal_url"] = settings.service_url("portal")
    templates.env.globals["hub_url"] = (
        app.state.sso.hub_url if app.state.sso else settings.public_url + "/hub/home"
    )
    app.state.services = Services(ctx, commands, EgressQueries(ctx), templates, base, EgressReruns(ctx))
    app.mount(f"{base}/static", StaticFiles(directory=str(STATIC)), name="static")
    app.add_middleware(SecurityHeaders)
    # Every body here is a form or JSON of short texts (at most 10,000 characters each): nothing
    # needs more than a megabyte, and a larger one is refused before it is read into memory.
    app.add_middleware(
        BodyLimit, max_bytes=1024 * 1024, hint="Texts here are at most 10,000 characters each."
    )
    app.include_router(sign_in_routes(base), prefix=base)
    app.include_router(pages.router, prefix=base)
    app.include_router(api.router, prefix=f"{base}/api")

    def is_api(request: Request) -> bool:
        return request.url.path.startswith(f"{base}/api/")

    def error_response(request: Request, status: int, message: str) -> Response:
        if is_api(request):
            return JSONResponse({"detail": message}, status_code=status)
        return templates.TemplateResponse(
            request, "error.html", {"status": status, "message": message, "me": None}, status_code=status
        )

    @app.exception_handler(NeedLogin)
    async def need_login(request: Request, exc: NeedLogin) -> Response:
        return need_login_response(request, exc, base, error_response, api=is_api(request))

    @app.exception_handler(EgressError)
    async def egress_error(request: Request, exc: EgressError) -> Response:
        return error_response(request, exc.status, str(exc))

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        return error_response(request, 422, str(exc))

    @app.exception_handler(InvalidRecord)
    async def invalid_record(request: Request, exc: InvalidRecord) -> Response:
        return error_response(request, 409, f"Release integrity check failed: {exc}")

    @app.exception_handler(CSRFRefused)
    async def csrf_refused(request: Request, exc: CSRFRefused) -> Response:
        return error_response(request, 403, f"Refused: {exc}. Reload the page and try again.")

    @app.exception_handler(RequestValidationError)
    async def invalid_input(request: Request, exc: RequestValidationError) -> Response:
        if is_api(request):
            return await request_validation_exception_handler(request, exc)
        return error_response(request, 422, "That page or form was not understood; go back and try again.")

    return app

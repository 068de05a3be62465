"""The egress web service: server-rendered pages and a JSON API (OpenAPI) over egress.service.

Everything hangs under the JupyterHub service prefix (default /services/egress/). Forms carry a
CSRF token bound to the session and are refused when the browser says the post came from another
site; cookie-authenticated API writes need the token in an X-CSRF-Token header. Researchers' HTML
and SVG are only ever shown as text or inside a sandboxed frame served with a `sandbox` CSP, so
they never run in this origin.
"""

import csv
import hmac
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlparse

import nh3
from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markdown_it import MarkdownIt
from pydantic import BaseModel, Field

from egress.auth import HubSSO, Identity, NeedLogin, current_identity
from egress.service import Egress, EgressError
from egress.signing import InvalidRecord
from egress.storage import Refused, suffix_of
from hub.db import upgrade
from hub.settings import Settings, get_settings

HERE = Path(__file__).parent
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# For researcher-made HTML/SVG: an opaque origin, no scripts, nothing fetched, framed only by us.
SANDBOX_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"
TEXT_TYPES = {"txt", "log", "py", "r", "sql", "json", "csv", "tsv", "md", "html", "svg", "ipynb"}
INLINE_IMAGES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg"}
SANDBOXED = {"html": "text/html", "svg": "image/svg+xml"}
MAX_RENDER = 2 * 1024 * 1024
MAX_ROWS, MAX_COLS = 500, 60
MAX_ID = 2**53  # ids beyond this cannot exist (and would overflow SQLite's INTEGER)
Id = Annotated[int, PathParam(ge=1, le=MAX_ID)]


# -- JSON bodies (they make the OpenAPI description precise) -------------------------------------


class NewRequest(BaseModel):
    project: str = Field(max_length=40)
    title: str = Field(max_length=200)


class NewGroup(BaseModel):
    name: str = Field(max_length=100)
    context: str = Field(default="", max_length=10_000)
    controls: str = Field(default="", max_length=10_000)


class GroupText(BaseModel):
    context: str = Field(max_length=10_000)
    controls: str = Field(max_length=10_000)


class NewFile(BaseModel):
    group_id: int = Field(ge=1, le=MAX_ID)
    path: str = Field(max_length=1000)
    kind: str = Field(pattern="^(output|supporting)$")


class NewVote(BaseModel):
    decision: str = Field(pattern="^(approve|changes|reject)$")
    comment: str = Field(default="", max_length=10_000)
    visibility: str = Field(default="checkers", pattern="^(checkers|author)$")


class NewComment(BaseModel):
    body: str = Field(max_length=10_000)
    visibility: str = Field(default="author", pattern="^(checkers|author)$")
    file_id: int | None = Field(default=None, ge=1, le=MAX_ID)


class Note(BaseModel):
    comment: str = Field(default="", max_length=10_000)


# -- rendering researcher files safely ---------------------------------------------------------

_md = MarkdownIt("commonmark", {"html": False}).enable("table")


def markdown_html(text: str) -> str:
    return nh3.clean(_md.render(text))


def flagged_cells(checks: dict[str, Any] | None, offset: int = 0) -> dict[tuple[int, int], list[str]]:
    """{(row, col): [messages]} from the findings' `cells`; the SDC engine counts body rows after the
    header and columns after the label columns, so `offset` shifts columns to file positions."""
    out: dict[tuple[int, int], list[str]] = {}
    for finding in (checks or {}).get("findings", []):
        for cell in finding.get("cells") or []:
            if isinstance(cell, list | tuple) and len(cell) == 2:
                out.setdefault((int(cell[0]), int(cell[1]) + offset), []).append(finding.get("message", ""))
    return out


def _numeric(value: str) -> bool:
    try:
        float(value.replace(",", ""))
    except ValueError:
        return False
    return True


def label_columns(rows: list[list[str]]) -> int:
    """Leading columns holding labels rather than numbers (how the SDC engine reads a table)."""
    body = rows[1:]
    width = max((len(r) for r in body), default=0)
    n = 0
    while n < width - 1:
        values = [r[n] for r in body if n < len(r) and r[n].strip()]
        if values and all(_numeric(v) for v in values):
            break
        n += 1
    return n


def render_table(data: bytes, delimiter: str, checks: dict[str, Any] | None) -> dict[str, Any]:
    text = data[:MAX_RENDER].decode("utf-8", "replace")
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    flags = flagged_cells(checks, label_columns(rows))
    header = rows[0][:MAX_COLS] if rows else []
    body = []
    for r, row in enumerate(rows[1 : MAX_ROWS + 1]):
        body.append([(value, flags.get((r, c))) for c, value in enumerate(row[:MAX_COLS])])
    return {"header": header, "rows": body, "truncated": len(rows) - 1 > MAX_ROWS, "flag_count": len(flags)}


def render_notebook(data: bytes) -> list[dict[str, Any]]:
    nb = json.loads(data[: MAX_RENDER * 4].decode("utf-8", "replace"))
    cells = []
    for cell in nb.get("cells", [])[:300]:
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        if cell.get("cell_type") == "markdown":
            cells.append({"kind": "markdown", "html": markdown_html(source)})
            continue
        outputs = []
        for out in cell.get("outputs", []) or []:
            bundle = out.get("data", {}) if isinstance(out, dict) else {}
            if "image/png" in bundle:
                png = (
                    "".join(bundle["image/png"])
                    if isinstance(bundle["image/png"], list)
                    else bundle["image/png"]
                )
                outputs.append({"image": "data:image/png;base64," + png.replace("\n", "")})
            elif "text/plain" in bundle or "text" in out:
                value = bundle.get("text/plain", out.get("text", ""))
                outputs.append({"text": "".join(value) if isinstance(value, list) else str(value)})
        cells.append({"kind": "code", "source": source, "outputs": outputs})
    return cells


def render_parquet(path: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    table = next(pf.iter_batches(batch_size=MAX_ROWS), None)
    header = list(pf.schema_arrow.names)[:MAX_COLS]
    rows = (
        []
        if table is None
        else [
            [(str(v), None) for v in row[:MAX_COLS]] for row in zip(*table.to_pydict().values(), strict=True)
        ]
    )
    return {"header": header, "rows": rows, "truncated": pf.metadata.num_rows > MAX_ROWS, "flag_count": 0}


def render_file(svc: Egress, meta: dict[str, Any], data: bytes) -> dict[str, Any]:
    ext = suffix_of(meta["name"])
    view: dict[str, Any] = {"ext": ext}
    try:
        if ext in ("csv", "tsv"):
            view["table"] = render_table(data, "\t" if ext == "tsv" else ",", meta.get("checks"))
        elif ext == "parquet":
            view["table"] = render_parquet(svc.store.path(meta["sha256"]))
        elif ext in INLINE_IMAGES:
            view["image"] = True
        elif ext == "md":
            view["html"] = markdown_html(data[:MAX_RENDER].decode("utf-8", "replace"))
        elif ext == "ipynb":
            view["notebook"] = render_notebook(data)
        elif ext in SANDBOXED:
            view["sandboxed"] = True
        if ext in TEXT_TYPES and "table" not in view and "notebook" not in view:
            view["text"] = data[:MAX_RENDER].decode("utf-8", "replace")
    except (ValueError, UnicodeDecodeError, OSError, ImportError, csv.Error) as exc:
        view = {"ext": ext, "error": f"This file could not be displayed ({exc}); download it to inspect."}
    return view


# -- the application ---------------------------------------------------------------------------


def create_app(settings: Settings | None = None, prefix: str | None = None, sso: bool = True) -> FastAPI:
    """The egress app. `sso=False` leaves sign-in unconfigured (tests then override the identity)."""
    settings = settings or get_settings()
    prefix = (prefix or os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or "/services/egress/").rstrip("/") + "/"
    base = prefix.rstrip("/")
    upgrade(settings)
    svc = Egress(settings)
    svc.recover()
    svc.signer.ensure_key()

    app = FastAPI(
        title="TRE egress review",
        version="1.0",
        openapi_url=f"{base}/api/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.svc = svc
    app.state.sso = HubSSO(settings, prefix) if sso else None
    app.state.prefix = prefix
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["prefix"] = base
    app.mount(f"{base}/static", StaticFiles(directory=str(HERE / "static")), name="static")

    app.add_middleware(SecurityHeaders)

    def is_api(request: Request) -> bool:
        return request.url.path.startswith(f"{base}/api/")

    @app.exception_handler(NeedLogin)
    async def need_login(request: Request, exc: NeedLogin) -> Response:
        if is_api(request) or request.method != "GET":
            return JSONResponse({"detail": f"Not signed in: {exc}"}, status_code=401)
        return RedirectResponse(f"{base}/login?next={quote(str(request.url.path))}", status_code=302)

    def error_response(request: Request, status: int, message: str) -> Response:
        if is_api(request):
            return JSONResponse({"detail": message}, status_code=status)
        return templates.TemplateResponse(
            request, "error.html", {"status": status, "message": message, "me": None}, status_code=status
        )

    @app.exception_handler(EgressError)
    async def egress_error(request: Request, exc: EgressError) -> Response:
        return error_response(request, exc.status, str(exc))

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        return error_response(request, 422, str(exc))

    @app.exception_handler(InvalidRecord)
    async def invalid_record(request: Request, exc: InvalidRecord) -> Response:
        return error_response(request, 409, f"Release integrity check failed: {exc}")

    # -- identity and CSRF -----------------------------------------------------------------

    def same_origin(request: Request) -> bool:
        """Browsers label cross-site posts; refuse them whatever cookies came along."""
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin") or request.headers.get("referer")
        if not origin or origin == "null":
            return origin is None
        host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
        return urlparse(origin).netloc == host

    def refuse_csrf(who: str, request: Request, why: str) -> None:
        svc.refusal(who, "csrf", "http", request.url.path, why)
        raise CSRFRefused(why)

    async def form_identity(request: Request, me: Annotated[Identity, Depends(current_identity)]) -> Identity:
        if not same_origin(request):
            refuse_csrf(me.username, request, "cross-site form post")
        form = await request.form()
        token = str(form.get("_csrf", ""))
        if not me.csrf or not hmac.compare_digest(token, me.csrf):
            refuse_csrf(me.username, request, "missing or wrong CSRF token")
        return me

    async def api_identity(request: Request, me: Annotated[Identity, Depends(current_identity)]) -> Identity:
        if request.method not in ("GET", "HEAD") and me.via == "cookie":
            token = request.headers.get("x-csrf-token", "")
            if not same_origin(request) or not me.csrf or not hmac.compare_digest(token, me.csrf):
                refuse_csrf(
                    me.username, request, "cookie-authenticated API write without a valid X-CSRF-Token"
                )
        return me

    @app.exception_handler(CSRFRefused)
    async def csrf_refused(request: Request, exc: CSRFRefused) -> Response:
        return error_response(request, 403, f"Refused: {exc}. Reload the page and try again.")

    Me = Annotated[Identity, Depends(current_identity)]
    FormMe = Annotated[Identity, Depends(form_identity)]
    ApiMe = Annotated[Identity, Depends(api_identity)]

    # -- sign-in -----------------------------------------------------------------------------

    pages = APIRouter(prefix=base, include_in_schema=False)

    @pages.get("/login")
    async def login(request: Request) -> Response:
        if app.state.sso is None:
            raise NeedLogin("no hub configured")
        return app.state.sso.login(request)

    @pages.get("/oauth_callback")
    async def oauth_callback(request: Request) -> Response:
        if app.state.sso is None:
            raise NeedLogin("no hub configured")
        try:
            return await app.state.sso.callback(request)
        except NeedLogin as exc:
            return error_response(request, 400, str(exc))

    @pages.get("/logout")
    async def logout() -> Response:
        if app.state.sso is None:
            return RedirectResponse(f"{base}/", status_code=302)
        return app.state.sso.logout()

    # -- pages -------------------------------------------------------------------------------

    def page(request: Request, me: Identity, name: str, **ctx: Any) -> HTMLResponse:
        who = svc.whoami(me.username)
        roles = {r for rs in who["projects"].values() for r in rs}
        nav = {"checker": "checker" in roles, "lead": "lead" in roles, "admin": who["is_admin"]}
        return templates.TemplateResponse(request, name, {"me": who, "csrf": me.csrf, "nav": nav, **ctx})

    def back(path: str) -> RedirectResponse:
        return RedirectResponse(f"{base}{path}", status_code=303)

    @pages.get("/")
    def home() -> Response:
        return back("/requests")

    @pages.get("/requests")
    def my_requests(request: Request, me: Me) -> HTMLResponse:
        rows = svc.list_requests(me.username, "mine", limit=200)
        who = svc.whoami(me.username)
        projects = sorted(p for p, r in who["projects"].items() if {"researcher", "lead"} & set(r))
        return page(request, me, "requests.html", rows=rows, projects=projects, title="My requests")

    @pages.post("/requests")
    def create_request_form(
        me: FormMe, project: Annotated[str, Form()], title: Annotated[str, Form()]
    ) -> Response:
        rid = svc.create_request(me.username, project, title)
        return back(f"/requests/{rid}")

    @pages.get("/queue")
    def queue(request: Request, me: Me) -> HTMLResponse:
        rows = svc.list_requests(me.username, "queue", limit=200)
        return page(
            request, me, "list.html", rows=rows, title="Review queue", empty="Nothing waiting for review."
        )

    @pages.get("/project")
    def project_requests(request: Request, me: Me) -> HTMLResponse:
        rows = svc.list_requests(me.username, "project", limit=200)
        return page(
            request, me, "list.html", rows=rows, title="Requests in projects I lead", empty="None yet."
        )

    @pages.get("/all")
    def all_requests(request: Request, me: Me) -> HTMLResponse:
        rows = svc.list_requests(me.username, "all", limit=200)
        return page(
            request, me, "list.html", rows=rows, title="All requests", empty="No submitted requests yet."
        )

    @pages.get("/history")
    def history(request: Request, me: Me) -> HTMLResponse:
        rows = svc.list_requests(me.username, "history", limit=200)
        return page(
            request,
            me,
            "list.html",
            rows=rows,
            title="Reviewed by me",
            empty="You have not reviewed any requests yet.",
        )

    @pages.get("/requests/{rid}")
    def request_page(request: Request, me: Me, rid: Id) -> HTMLResponse:
        view = svc.request_view(me.username, rid)
        return page(request, me, "request.html", r=view, title=view["title"], precheck=None)

    @pages.post("/requests/{rid}/precheck")
    def precheck_form(request: Request, me: FormMe, rid: Id) -> HTMLResponse:
        results = svc.precheck(me.username, rid)
        view = svc.request_view(me.username, rid)
        return page(request, me, "request.html", r=view, title=view["title"], precheck=results)

    @pages.post("/requests/{rid}/groups")
    def add_group_form(
        me: FormMe,
        rid: Id,
        name: Annotated[str, Form()],
        context: Annotated[str, Form()] = "",
        controls: Annotated[str, Form()] = "",
    ) -> Response:
        svc.add_group(me.username, rid, name, context, controls)
        return back(f"/requests/{rid}")

    @pages.post("/groups/{gid}")
    def update_group_form(
        me: FormMe,
        gid: Id,
        rid: Annotated[int, Form()],
        context: Annotated[str, Form()] = "",
        controls: Annotated[str, Form()] = "",
    ) -> Response:
        svc.update_group(me.username, gid, context, controls)
        return back(f"/requests/{rid}")

    @pages.get("/requests/{rid}/pick")
    def pick(request: Request, me: Me, rid: Id, dir: str = "") -> HTMLResponse:
        view = svc.request_view(me.username, rid)
        entries = svc.workspace(me.username, view["project"], dir)
        parent = dir.rsplit("/", 1)[0] if "/" in dir else ""
        return page(
            request, me, "pick.html", r=view, entries=entries, dir=dir, parent=parent, title="Add files"
        )

    @pages.get("/requests/{rid}/preview")
    def preview(request: Request, me: Me, rid: Id, path: str) -> HTMLResponse:
        view = svc.request_view(me.username, rid)
        data = svc.workspace_preview(me.username, view["project"], path)
        return page(
            request,
            me,
            "preview.html",
            r=view,
            path=path,
            text=data.decode("utf-8", "replace"),
            binary=suffix_of(path) in ("png", "jpg", "jpeg", "parquet", "pdf"),
            title=f"Preview {path}",
        )

    @pages.post("/requests/{rid}/files")
    def add_file_form(
        me: FormMe,
        rid: Id,
        group_id: Annotated[int, Form()],
        path: Annotated[str, Form()],
        kind: Annotated[str, Form()],
    ) -> Response:
        svc.add_file(me.username, rid, group_id, path, kind)
        return back(f"/requests/{rid}")

    @pages.post("/files/{fid}/update")
    def update_file_form(me: FormMe, fid: Id, rid: Annotated[int, Form()]) -> Response:
        svc.update_file(me.username, fid)
        return back(f"/requests/{rid}")

    @pages.post("/files/{fid}/remove")
    def remove_file_form(me: FormMe, fid: Id, rid: Annotated[int, Form()]) -> Response:
        svc.remove_file(me.username, fid)
        return back(f"/requests/{rid}")

    @pages.get("/files/{fid}")
    def file_page(request: Request, me: Me, fid: Id) -> HTMLResponse:
        meta, data = svc.file_content(me.username, fid, MAX_RENDER * 4)
        view = svc.request_view(me.username, meta["request_id"])
        f = next(f for f in view["files"] if f["id"] == fid)
        comments = [c for c in view["comments"] if c["file_id"] == fid]
        return page(
            request,
            me,
            "file.html",
            r=view,
            f=f,
            shown=render_file(svc, meta, data),
            comments=comments,
            title=f["name"],
        )

    @pages.get("/files/{fid}/raw")
    def file_raw(me: Me, fid: Id) -> Response:
        meta, data = svc.file_content(me.username, fid)
        ext = suffix_of(meta["name"])
        headers = {"X-Content-Type-Options": "nosniff"}
        if ext in SANDBOXED:
            headers["Content-Security-Policy"] = SANDBOX_CSP
            headers["X-Frame-Options"] = "SAMEORIGIN"
            return Response(data, media_type=SANDBOXED[ext], headers=headers)
        if ext in INLINE_IMAGES:
            headers["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'none'"
            return Response(data, media_type=INLINE_IMAGES[ext], headers=headers)
        headers["Content-Disposition"] = f'attachment; filename="{quote(meta["name"])}"'
        return Response(data, media_type="application/octet-stream", headers=headers)

    @pages.post("/files/{fid}/vote")
    def vote_form(
        me: FormMe,
        fid: Id,
        rid: Annotated[int, Form()],
        decision: Annotated[str, Form()],
        comment: Annotated[str, Form()] = "",
        visibility: Annotated[str, Form()] = "checkers",
    ) -> Response:
        svc.vote(me.username, fid, decision, comment, visibility)
        return back(f"/files/{fid}")

    @pages.post("/requests/{rid}/comments")
    def comment_form(
        me: FormMe,
        rid: Id,
        body: Annotated[str, Form()],
        visibility: Annotated[str, Form()] = "author",
    ) -> Response:
        svc.comment(me.username, rid, body, visibility)
        return back(f"/requests/{rid}")

    @pages.post("/requests/{rid}/{action}")
    def request_action_form(
        me: FormMe, rid: Id, action: str, comment: Annotated[str, Form()] = ""
    ) -> Response:
        do_action(me.username, rid, action, comment)
        return back(f"/requests/{rid}")

    @pages.get("/requests/{rid}/download")
    def download_page(request: Request, me: Me, rid: Id) -> Response:
        # A download is recorded (and ends the chance to revoke), so another site must not trigger it.
        if not same_origin(request):
            refuse_csrf(me.username, request, "download started from another site")
        path, name = svc.download(me.username, rid)
        return FileResponse(path, filename=name, media_type="application/zip")

    @pages.get("/audit")
    def audit_page(
        request: Request, me: Me, actor: str = "", action: str = "", object_id: str = "", offset: int = 0
    ) -> HTMLResponse:
        events = svc.audit_log(me.username, actor, action, object_id, 100, offset)
        filters = {"actor": actor, "action": action, "object_id": object_id}
        return page(
            request, me, "audit.html", events=events, filters=filters, offset=offset, title="Audit log"
        )

    def do_action(who: str, rid: Id, action: str, comment: str) -> None:
        actions: dict[str, Callable[[], None]] = {
            "submit": lambda: svc.submit(who, rid),
            "withdraw": lambda: svc.withdraw(who, rid),
            "return": lambda: svc.return_request(who, rid, comment),
            "reject": lambda: svc.reject_request(who, rid, comment),
            "release": lambda: svc.release(who, rid),
            "revoke": lambda: svc.revoke(who, rid, comment),
        }
        if action not in actions:
            raise NotFoundAction(f"There is no action {action!r} on a request.")
        actions[action]()

    @app.exception_handler(NotFoundAction)
    async def no_action(request: Request, exc: NotFoundAction) -> Response:
        return error_response(request, 404, str(exc))

    # -- JSON API ----------------------------------------------------------------------------

    api = APIRouter(prefix=f"{base}/api", tags=["egress"])
    err = {"model": ErrorBody}
    errors: dict[int | str, dict[str, Any]] = {401: err, 403: err, 404: err, 409: err, 422: err}

    @api.get("/me", responses=errors)
    async def api_me(me: ApiMe) -> dict[str, Any]:
        return svc.whoami(me.username)

    @api.get("/requests", responses=errors, response_model=list[dict[str, Any]])
    async def api_list(
        me: ApiMe,
        scope: Annotated[str, Query(pattern="^(mine|queue|history|project|all)$")] = "mine",
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> Response:
        # Hot path: hand the (cached) rows straight to JSON, skipping per-request re-validation.
        return JSONResponse(svc.list_requests(me.username, scope, limit, offset))

    @api.post("/requests", status_code=201, responses=errors)
    def api_create(me: ApiMe, body: NewRequest) -> dict[str, Any]:
        return {"id": svc.create_request(me.username, body.project, body.title)}

    @api.get("/requests/{rid}", responses=errors, response_model=dict[str, Any])
    async def api_request(me: ApiMe, rid: Id) -> Response:
        return JSONResponse(svc.request_view(me.username, rid))

    @api.post("/requests/{rid}/groups", status_code=201, responses=errors)
    def api_add_group(me: ApiMe, rid: Id, body: NewGroup) -> dict[str, Any]:
        return {"id": svc.add_group(me.username, rid, body.name, body.context, body.controls)}

    @api.put("/groups/{gid}", responses=errors)
    def api_update_group(me: ApiMe, gid: Id, body: GroupText) -> dict[str, Any]:
        svc.update_group(me.username, gid, body.context, body.controls)
        return {"ok": True}

    @api.post("/requests/{rid}/files", status_code=201, responses=errors)
    def api_add_file(me: ApiMe, rid: Id, body: NewFile) -> dict[str, Any]:
        return {"id": svc.add_file(me.username, rid, body.group_id, body.path, body.kind)}

    @api.post("/files/{fid}/update", responses=errors)
    def api_update_file(me: ApiMe, fid: Id) -> dict[str, Any]:
        return {"version": svc.update_file(me.username, fid)}

    @api.delete("/files/{fid}", responses=errors)
    def api_remove_file(me: ApiMe, fid: Id) -> dict[str, Any]:
        svc.remove_file(me.username, fid)
        return {"ok": True}

    @api.get("/files/{fid}", responses=errors)
    async def api_file(me: ApiMe, fid: Id) -> dict[str, Any]:
        meta, _ = svc.file_content(me.username, fid, 0)
        return meta

    @api.post("/requests/{rid}/precheck", responses=errors)
    def api_precheck(me: ApiMe, rid: Id) -> dict[str, Any]:
        return {str(k): v for k, v in svc.precheck(me.username, rid).items()}

    @api.post("/requests/{rid}/actions/{action}", responses=errors)
    def api_action(
        me: ApiMe,
        rid: Id,
        action: Annotated[str, PathParam(pattern="^(submit|withdraw|return|reject|release|revoke)$")],
        body: Note | None = None,
    ) -> dict[str, Any]:
        do_action(me.username, rid, action, body.comment if body else "")
        return {"state": svc.request_view(me.username, rid)["state"]}

    @api.post("/files/{fid}/votes", responses=errors)
    def api_vote(me: ApiMe, fid: Id, body: NewVote) -> dict[str, Any]:
        return {"state": svc.vote(me.username, fid, body.decision, body.comment, body.visibility)}

    @api.post("/requests/{rid}/comments", status_code=201, responses=errors)
    def api_comment(me: ApiMe, rid: Id, body: NewComment) -> dict[str, Any]:
        return {"id": svc.comment(me.username, rid, body.body, body.visibility, body.file_id)}

    @api.get("/requests/{rid}/download", responses=errors, response_class=FileResponse)
    def api_download(me: ApiMe, rid: Id) -> FileResponse:
        path, name = svc.download(me.username, rid)
        return FileResponse(path, filename=name, media_type="application/zip")

    @api.get("/workspace/{project}", responses=errors)
    def api_workspace(
        me: ApiMe, project: str, dir: Annotated[str, Query(max_length=1000)] = ""
    ) -> list[dict[str, Any]]:
        return [e.__dict__ for e in svc.workspace(me.username, project, dir)]

    @api.get("/audit", responses=errors)
    def api_audit(
        me: ApiMe,
        actor: Annotated[str, Query(max_length=200)] = "",
        action: Annotated[str, Query(max_length=100)] = "",
        object_id: Annotated[str, Query(max_length=200)] = "",
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> list[dict[str, Any]]:
        return svc.audit_log(me.username, actor, action, object_id, limit, offset)

    app.include_router(pages)
    app.include_router(api)
    return app


class SecurityHeaders:
    """Strict default headers on every response (a plain ASGI middleware: cheap on hot paths).

    Responses that set their own CSP (sandboxed researcher files) keep it."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                defaults = [
                    (b"content-security-policy", PAGE_CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"cache-control", b"no-store"),
                ]
                if b"content-security-policy" not in present:
                    defaults.append((b"x-frame-options", b"DENY"))
                headers += [(k, v) for k, v in defaults if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class ErrorBody(BaseModel):
    detail: str


class CSRFRefused(Exception):
    pass


class NotFoundAction(Exception):
    pass

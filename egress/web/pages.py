"""Server-rendered pages of the egress service (no OpenAPI entries: the API router has those)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from egress.review.queries import ListScope
from egress.review.storage import suffix_of
from egress.web.deps import Id, RequestOp, Svc
from egress.web.render import INLINE_IMAGES, MAX_RENDER, SANDBOX_CSP, SANDBOXED, render_file
from hub.web.security import FormMe, Me, refuse_csrf, same_origin

router = APIRouter(include_in_schema=False)


def back(svc: Svc, path: str) -> RedirectResponse:
    return RedirectResponse(f"{svc.base}{path}", status_code=303)


# -- lists ---------------------------------------------------------------------------------------


@router.get("/")
def home(svc: Svc) -> Response:
    return back(svc, "/requests")


@router.get("/requests")
def my_requests(request: Request, me: Me, svc: Svc) -> HTMLResponse:
    rows = svc.queries.list_requests(me.username, ListScope.MINE, limit=200)
    projects = svc.author_projects(me.username)
    return svc.page(request, me, "requests.html", rows=rows, projects=projects, title="My requests")


@router.post("/requests")
def create_request_form(
    me: FormMe, svc: Svc, project: Annotated[str, Form()], title: Annotated[str, Form()]
) -> Response:
    rid = svc.commands.create_request(me.username, project, title)
    return back(svc, f"/requests/{rid}")


LISTS = {
    "queue": (ListScope.QUEUE, "Review queue", "Nothing waiting for review."),
    "project": (ListScope.PROJECT, "Requests in projects I lead", "None yet."),
    "all": (ListScope.ALL, "All requests", "No submitted requests yet."),
    "history": (ListScope.HISTORY, "Reviewed by me", "You have not reviewed any requests yet."),
}


def _list_page(name: str):
    scope, title, empty = LISTS[name]

    def show(request: Request, me: Me, svc: Svc) -> HTMLResponse:
        rows = svc.queries.list_requests(me.username, scope, limit=200)
        return svc.page(request, me, "list.html", rows=rows, title=title, empty=empty)

    show.__name__ = f"{name}_page"
    return show


for _name in LISTS:
    router.add_api_route(f"/{_name}", _list_page(_name), methods=["GET"], response_class=HTMLResponse)


# -- a request -----------------------------------------------------------------------------------


@router.get("/requests/{rid}")
def request_page(request: Request, me: Me, svc: Svc, rid: Id) -> HTMLResponse:
    view = svc.queries.request_view(me.username, rid)
    return svc.page(request, me, "request.html", r=view, title=view["title"], precheck=None)


@router.post("/requests/{rid}/precheck")
def precheck_form(request: Request, me: FormMe, svc: Svc, rid: Id) -> HTMLResponse:
    results = svc.commands.precheck(me.username, rid)
    view = svc.queries.request_view(me.username, rid)
    return svc.page(request, me, "request.html", r=view, title=view["title"], precheck=results)


@router.post("/requests/{rid}/groups")
def add_group_form(
    me: FormMe,
    svc: Svc,
    rid: Id,
    name: Annotated[str, Form()],
    context: Annotated[str, Form()] = "",
    controls: Annotated[str, Form()] = "",
) -> Response:
    svc.commands.add_group(me.username, rid, name, context, controls)
    return back(svc, f"/requests/{rid}")


@router.post("/groups/{gid}")
def update_group_form(
    me: FormMe,
    svc: Svc,
    gid: Id,
    rid: Annotated[int, Form()],
    context: Annotated[str, Form()] = "",
    controls: Annotated[str, Form()] = "",
) -> Response:
    svc.commands.update_group(me.username, gid, context, controls)
    return back(svc, f"/requests/{rid}")


@router.get("/requests/{rid}/pick")
def pick(request: Request, me: Me, svc: Svc, rid: Id, dir: str = "") -> HTMLResponse:
    view = svc.queries.request_view(me.username, rid)
    entries = svc.queries.workspace(me.username, view["project"], dir)
    parent = dir.rsplit("/", 1)[0] if "/" in dir else ""
    return svc.page(
        request, me, "pick.html", r=view, entries=entries, dir=dir, parent=parent, title="Add files"
    )


@router.get("/requests/{rid}/preview")
def preview(request: Request, me: Me, svc: Svc, rid: Id, path: str) -> HTMLResponse:
    view = svc.queries.request_view(me.username, rid)
    data = svc.queries.workspace_preview(me.username, view["project"], path)
    return svc.page(
        request,
        me,
        "preview.html",
        r=view,
        path=path,
        text=data.decode("utf-8", "replace"),
        binary=suffix_of(path) in ("png", "jpg", "jpeg", "parquet", "pdf"),
        title=f"Preview {path}",
    )


@router.post("/requests/{rid}/files")
def add_file_form(
    me: FormMe,
    svc: Svc,
    rid: Id,
    group_id: Annotated[int, Form()],
    path: Annotated[str, Form()],
    kind: Annotated[str, Form()],
) -> Response:
    svc.commands.add_file(me.username, rid, group_id, path, kind)
    return back(svc, f"/requests/{rid}")


@router.post("/files/{fid}/update")
def update_file_form(me: FormMe, svc: Svc, fid: Id, rid: Annotated[int, Form()]) -> Response:
    svc.commands.update_file(me.username, fid)
    return back(svc, f"/requests/{rid}")


@router.post("/files/{fid}/remove")
def remove_file_form(me: FormMe, svc: Svc, fid: Id, rid: Annotated[int, Form()]) -> Response:
    svc.commands.remove_file(me.username, fid)
    return back(svc, f"/requests/{rid}")


@router.get("/files/{fid}")
def file_page(request: Request, me: Me, svc: Svc, fid: Id) -> HTMLResponse:
    meta, data = svc.queries.file_content(me.username, fid, MAX_RENDER * 4)
    view = svc.queries.request_view(me.username, meta["request_id"])
    f = next(f for f in view["files"] if f["id"] == fid)
    comments = [c for c in view["comments"] if c["file_id"] == fid]
    shown = render_file(svc.ctx.store, meta, data)
    return svc.page(request, me, "file.html", r=view, f=f, shown=shown, comments=comments, title=f["name"])


@router.get("/files/{fid}/raw")
def file_raw(me: Me, svc: Svc, fid: Id) -> Response:
    meta, data = svc.queries.file_content(me.username, fid, raw=True)
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


@router.post("/files/{fid}/vote")
def vote_form(
    me: FormMe,
    svc: Svc,
    fid: Id,
    rid: Annotated[int, Form()],
    decision: Annotated[str, Form()],
    sha256: Annotated[str, Form(max_length=64)],
    comment: Annotated[str, Form()] = "",
    visibility: Annotated[str, Form()] = "checkers",
    override: Annotated[bool, Form()] = False,
) -> Response:
    svc.commands.vote(me.username, fid, decision, comment, visibility, sha256=sha256, override=override)
    return back(svc, f"/files/{fid}")


@router.post("/requests/{rid}/comments")
def comment_form(
    me: FormMe,
    svc: Svc,
    rid: Id,
    body: Annotated[str, Form()],
    visibility: Annotated[str, Form()] = "author",
) -> Response:
    svc.commands.comment(me.username, rid, body, visibility)
    return back(svc, f"/requests/{rid}")


@router.get("/requests/{rid}/download")
def download_page(request: Request, me: Me, svc: Svc, rid: Id) -> Response:
    # A download is recorded (and ends the chance to revoke), so another site must not trigger it.
    if not same_origin(request):
        refuse_csrf(request, me.username, "download started from another site")
    path, name = svc.commands.download(me.username, rid)
    return FileResponse(path, filename=name, media_type="application/zip")


@router.post("/requests/{rid}/rerun")
def rerun_form(me: FormMe, svc: Svc, rid: Id, tasks: BackgroundTasks) -> Response:
    # Recorded now; run after the response (a thread of the server's pool, bounded per host).
    rerun_id = svc.reruns.start(me.username, rid)
    tasks.add_task(svc.reruns.execute, rerun_id)
    return back(svc, f"/requests/{rid}")


@router.post("/reruns/{rerun_id}/cancel")
def rerun_cancel_form(me: FormMe, svc: Svc, rerun_id: Id, rid: Annotated[int, Form()]) -> Response:
    svc.reruns.cancel(me.username, rerun_id)
    return back(svc, f"/requests/{rid}#reruns")


@router.post("/requests/{rid}/{op}")
def request_op_form(
    me: FormMe, svc: Svc, rid: Id, op: RequestOp, tasks: BackgroundTasks, comment: Annotated[str, Form()] = ""
) -> Response:
    svc.perform(me.username, rid, op, comment, tasks)
    return back(svc, f"/requests/{rid}")


@router.get("/audit")
def audit_page(
    request: Request,
    me: Me,
    svc: Svc,
    actor: str = "",
    action: str = "",
    object_id: str = "",
    offset: int = 0,
) -> HTMLResponse:
    events = svc.queries.audit_log(me.username, actor, action, object_id, 100, offset)
    filters = {"actor": actor, "action": action, "object_id": object_id}
    return svc.page(
        request, me, "audit.html", events=events, filters=filters, offset=offset, title="Audit log"
    )

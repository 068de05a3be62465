"""The JSON API (OpenAPI at <prefix>/api/openapi.json) over the same commands and queries as the pages."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from egress.review.queries import AUDIT_LIMIT, LIST_LIMIT, ListScope
from egress.web.deps import Id, RequestOp, Svc
from egress.web.schemas import ErrorBody, GroupText, NewComment, NewFile, NewGroup, NewRequest, NewVote, Note
from hub.web.security import ApiMe, refuse_csrf, same_origin

ERROR = {"model": ErrorBody}
router = APIRouter(tags=["egress"], responses={401: ERROR, 403: ERROR, 404: ERROR, 409: ERROR, 422: ERROR})


@router.get("/me")
async def api_me(me: ApiMe, svc: Svc) -> dict[str, Any]:
    return svc.queries.whoami(me.username)


@router.get("/requests", response_model=list[dict[str, Any]])
async def api_list(
    me: ApiMe,
    svc: Svc,
    scope: ListScope = ListScope.MINE,
    limit: Annotated[int, Query(ge=1, le=LIST_LIMIT)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    # Hot path: hand the (cached) rows straight to JSON, skipping per-request re-validation.
    return JSONResponse(svc.queries.list_requests(me.username, scope, limit, offset))


@router.post("/requests", status_code=201)
def api_create(me: ApiMe, svc: Svc, body: NewRequest) -> dict[str, Any]:
    return {"id": svc.commands.create_request(me.username, body.project, body.title)}


@router.get("/requests/{rid}", response_model=dict[str, Any])
async def api_request(me: ApiMe, svc: Svc, rid: Id) -> Response:
    return JSONResponse(svc.queries.request_view(me.username, rid))


@router.post("/requests/{rid}/groups", status_code=201)
def api_add_group(me: ApiMe, svc: Svc, rid: Id, body: NewGroup) -> dict[str, Any]:
    return {"id": svc.commands.add_group(me.username, rid, body.name, body.context, body.controls)}


@router.put("/groups/{gid}")
def api_update_group(me: ApiMe, svc: Svc, gid: Id, body: GroupText) -> dict[str, Any]:
    svc.commands.update_group(me.username, gid, body.context, body.controls)
    return {"ok": True}


@router.post("/requests/{rid}/files", status_code=201)
def api_add_file(me: ApiMe, svc: Svc, rid: Id, body: NewFile) -> dict[str, Any]:
    return {"id": svc.commands.add_file(me.username, rid, body.group_id, body.path, body.kind)}


@router.post("/files/{fid}/update")
def api_update_file(me: ApiMe, svc: Svc, fid: Id) -> dict[str, Any]:
    return {"version": svc.commands.update_file(me.username, fid)}


@router.delete("/files/{fid}")
def api_remove_file(me: ApiMe, svc: Svc, fid: Id) -> dict[str, Any]:
    svc.commands.remove_file(me.username, fid)
    return {"ok": True}


@router.get("/files/{fid}")
async def api_file(me: ApiMe, svc: Svc, fid: Id) -> dict[str, Any]:
    meta, _ = svc.queries.file_content(me.username, fid, 0)
    return meta


@router.post("/requests/{rid}/precheck")
def api_precheck(me: ApiMe, svc: Svc, rid: Id) -> dict[str, Any]:
    return {str(k): v for k, v in svc.commands.precheck(me.username, rid).items()}


@router.post("/requests/{rid}/actions/{op}")
def api_action(
    me: ApiMe, svc: Svc, rid: Id, op: RequestOp, tasks: BackgroundTasks, body: Note | None = None
) -> dict[str, Any]:
    svc.perform(me.username, rid, op, body.comment if body else "", tasks)
    return {"state": svc.queries.request_view(me.username, rid)["state"]}


@router.post("/files/{fid}/votes")
def api_vote(me: ApiMe, svc: Svc, fid: Id, body: NewVote) -> dict[str, Any]:
    state = svc.commands.vote(
        me.username,
        fid,
        body.decision,
        body.comment,
        body.visibility,
        sha256=body.sha256,
        override=body.override,
    )
    return {"state": state}


@router.post("/requests/{rid}/comments", status_code=201)
def api_comment(me: ApiMe, svc: Svc, rid: Id, body: NewComment) -> dict[str, Any]:
    return {"id": svc.commands.comment(me.username, rid, body.body, body.visibility, body.file_id)}


@router.get("/requests/{rid}/download", response_class=FileResponse)
def api_download(request: Request, me: ApiMe, svc: Svc, rid: Id) -> FileResponse:
    # Recorded and final, like the page's download: a page on another site must not start it.
    if not same_origin(request):
        refuse_csrf(request, me.username, "download started from another site")
    path, name = svc.commands.download(me.username, rid)
    return FileResponse(path, filename=name, media_type="application/zip")


@router.get("/workspace/{project}")
def api_workspace(
    me: ApiMe, svc: Svc, project: str, dir: Annotated[str, Query(max_length=1000)] = ""
) -> list[dict[str, Any]]:
    return [e.__dict__ for e in svc.queries.workspace(me.username, project, dir)]


@router.get("/audit")
def api_audit(
    me: ApiMe,
    svc: Svc,
    actor: Annotated[str, Query(max_length=200)] = "",
    action: Annotated[str, Query(max_length=100)] = "",
    object_id: Annotated[str, Query(max_length=200)] = "",
    limit: Annotated[int, Query(ge=1, le=AUDIT_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[dict[str, Any]]:
    return svc.queries.audit_log(me.username, actor, action, object_id, limit, offset)

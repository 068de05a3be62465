"""Applications and permits in the portal: the lead's form, the custodian's queue and decision.

Every change is one operation of hub.registry.applications (rules, change and audit event in one
transaction); these handlers only read forms and draw pages. A refusal redraws the page with the
reason and what the person typed, and nothing is saved. Approval starts provisioning, whose progress
the application page shows (it reloads itself while the build runs: the portal serves no scripts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.datastructures import FormData

from hub.kernel.db import session_scope
from hub.kernel.settings import Settings
from hub.kernel.signing import PERMITS, Signer, load_keyset
from hub.provisioning.runs import latest_run, start_run
from hub.registry import applications as apps
from hub.registry.catalogue import catalogue_entries
from hub.registry.errors import RegistryError
from hub.registry.lookup import find_user
from hub.registry.models import Application, ApplicationAttachment, Permit, User, is_opaque_id
from hub.registry.permissions import NotAllowed
from hub.registry.vocabulary import (
    EDITABLE_APPLICATIONS,
    PURPOSE_LABELS,
    ApplicationStatus,
    DataForm,
    PermitStatus,
    Purpose,
    is_slug,
)
from hub.web.security import FormMe, Me

router = APIRouter(include_in_schema=False)


# -- reading forms -------------------------------------------------------------------------------


def _date(value: str, what: str) -> datetime | None:
    """A yyyy-mm-dd from a date input, as the end of that day in UTC."""
    if not value.strip():
        return None
    try:
        day = datetime.strptime(value.strip(), "%Y-%m-%d").date()
    except ValueError:
        raise RegistryError(f"{what} {value!r} is not a date; use the date picker (yyyy-mm-dd)") from None
    return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)


def _revision(form: FormData) -> int:
    value = str(form.get("revision", ""))
    if not value.isdigit():
        raise apps.StaleForm("this form has no revision; reload the page and try again")
    return int(value)


def _requests_from(form: FormData) -> list[dict[str, Any]]:
    """Ticked columns `col:<dataset>:<table>:<column>` and reasons `why:<dataset>:<table>.<column>`."""
    requests: dict[str, dict[str, Any]] = {}
    for key in form:
        if key.startswith("col:"):
            _, dataset, table, column = [*key.split(":", 3), "", "", ""][:4]
            entry = requests.setdefault(dataset, {"dataset": dataset, "columns": {}, "justifications": {}})
            entry["columns"].setdefault(table, []).append(column)
    for dataset, entry in requests.items():
        for table, cols in entry["columns"].items():
            for column in cols:
                why = str(form.get(f"why:{dataset}:{table}.{column}", "")).strip()
                if why:
                    entry["justifications"][f"{table}.{column}"] = why
    return list(requests.values())


def _fields_from(form: FormData) -> dict[str, Any]:
    fields: dict[str, Any] = {name: str(form.get(name, "")) for name in apps.TEXT_FIELDS}
    fields["purpose"] = str(form.get("purpose", ""))
    fields["data_form"] = str(form.get("data_form", ""))
    fields["ends_at"] = _date(str(form.get("ends_at", "")), "the end of the period")
    fields["researchers"] = [n for n in str(form.get("researchers", "")).replace(",", " ").split() if n]
    fields["datasets"] = _requests_from(form)
    return fields


@dataclass
class Draft:
    """The edit form's values: from the saved application, or from what was just posted."""

    fields: dict[str, Any]
    chosen: set[str] = field(default_factory=set)  # "<dataset>:<table>:<column>"
    reasons: dict[str, str] = field(default_factory=dict)  # "<dataset>:<table>.<column>" -> why

    @classmethod
    def of(cls, fields: dict[str, Any]) -> Draft:
        chosen, reasons = set(), {}
        for request in fields.get("datasets") or []:
            for table, cols in request["columns"].items():
                chosen |= {f"{request['dataset']}:{table}:{c}" for c in cols}
            reasons |= {f"{request['dataset']}:{k}": v for k, v in request["justifications"].items()}
        ends = fields.get("ends_at")
        shown = {**fields, "ends_at": ends.strftime("%Y-%m-%d") if ends else ""}
        shown["researchers"] = " ".join(fields.get("researchers") or [])
        return cls(shown, chosen, reasons)


def _saved_fields(application: Application) -> dict[str, Any]:
    return {
        **{name: getattr(application, name) for name in apps.TEXT_FIELDS},
        "purpose": application.purpose,
        "data_form": application.data_form,
        "ends_at": application.ends_at,
        "researchers": application.researchers,
        "datasets": application.datasets,
    }


# -- pages ---------------------------------------------------------------------------------------


def _status_of(exc: Exception) -> int:
    """409: the page was stale; 403: not this person's to do; 422: what was sent is wrong."""
    return 409 if isinstance(exc, apps.StaleForm) else 403 if isinstance(exc, NotAllowed) else 422


def _render(request: Request, template: str, me: Me, status: int = 200, **context: Any) -> HTMLResponse:
    return request.app.state.templates.TemplateResponse(
        request, template, {"me": me, **context}, status_code=status
    )


def _to(request: Request, path: str) -> RedirectResponse:
    return RedirectResponse(f"{request.app.state.base}{path}", status_code=303)


def _application_id(value: str) -> str:
    if not is_opaque_id(value, "a"):
        raise apps.NoSuchApplication(f"There is no application {value!r} that you can see.")
    return value


def _mine(settings: Settings, username: str) -> list[tuple]:
    """The lead's applications, newest first, as the list page shows them."""
    with session_scope(settings, readonly=True) as s:
        rows = s.execute(
            select(Application)
            .join(User, Application.lead_id == User.id)
            .where(User.username == username)
            .order_by(Application.created_at.desc())
        ).scalars()
        return [(a.id, a.project_slug, a.version, a.title, a.status, a.created_at) for a in rows]


@router.get("/applications")
def my_applications(request: Request, me: Me) -> HTMLResponse:
    mine = _mine(request.app.state.settings, me.username)
    return _render(request, "applications.html", me, mine=mine, title="Your applications")


@router.post("/applications")
def start(
    request: Request, me: FormMe, slug: Annotated[str, Form()] = "", title: Annotated[str, Form()] = ""
) -> Response:
    settings = request.app.state.settings
    try:
        with session_scope(settings) as s:
            application_id = apps.start_application(s, me.username, slug.strip().lower(), title).id
    except (RegistryError, NotAllowed) as exc:
        mine = _mine(settings, me.username)
        return _render(
            request, "applications.html", me, 422, mine=mine, error=str(exc), slug=slug, new_title=title
        )
    return _to(request, f"/applications/{application_id}/edit")


def _edit_page(
    request: Request,
    me: Me,
    application_id: str,
    draft: Draft | None = None,
    error: str = "",
    status: int = 200,
) -> HTMLResponse:
    settings = request.app.state.settings
    with session_scope(settings, readonly=True) as s:
        application, _ = apps.get_application(s, me.username, application_id)
        if application.lead.username != me.username:
            raise apps.NoSuchApplication(f"There is no application {application_id!r} that you can edit.")
        entries = catalogue_entries(s)
        draft = draft or Draft.of(_saved_fields(application))
        missing = apps.missing_parts(s, application) if application.status in EDITABLE_APPLICATIONS else []
        context = {
            "a": application,
            "editable": application.status in EDITABLE_APPLICATIONS,
            "messages": [(m.kind, m.author.username, m.created_at, m.text) for m in application.messages],
        }
        return _render(
            request,
            "application_edit.html",
            me,
            status,
            draft=draft,
            entries=entries,
            purposes=PURPOSE_LABELS,
            forms=list(DataForm),
            missing=missing,
            error=error,
            title=f"Application {application.id}",
            **context,
        )


@router.get("/applications/{application_id}/edit")
def edit(request: Request, me: Me, application_id: str) -> HTMLResponse:
    return _edit_page(request, me, _application_id(application_id))


@router.post("/applications/{application_id}/edit")
async def save(request: Request, me: FormMe, application_id: str) -> Response:
    application_id = _application_id(application_id)
    settings = request.app.state.settings
    form = await request.form()
    posted: dict[str, Any] = {}
    try:
        posted = _fields_from(form)
        revision = _revision(form)
        with session_scope(settings) as s:
            application = apps.update_application(s, me.username, application_id, revision, posted)
            if form.get("action") == "submit":
                s.flush()
                apps.submit_application(s, me.username, application_id, application.revision)
    except (RegistryError, NotAllowed) as exc:
        if isinstance(exc, apps.NoSuchApplication):
            raise
        draft = Draft.of(posted) if posted else None
        return _edit_page(request, me, application_id, draft, str(exc), _status_of(exc))
    if form.get("action") == "submit":
        return _to(request, f"/applications/{application_id}")
    return _to(request, f"/applications/{application_id}/edit#saved")


@router.post("/applications/{application_id}/protocol")
async def upload_protocol(
    request: Request,
    me: FormMe,
    application_id: str,
    protocol: Annotated[UploadFile, File()],
    revision: Annotated[int, Form()] = 0,
) -> Response:
    application_id = _application_id(application_id)
    # Read one byte past the cap: enough to refuse a larger file without holding all of it.
    content = await protocol.read(apps.MAX_ATTACHMENT_BYTES + 1)
    try:
        with session_scope(request.app.state.settings) as s:
            apps.attach_protocol(s, me.username, application_id, revision, protocol.filename or "", content)
    except RegistryError as exc:
        return _edit_page(request, me, application_id, None, str(exc), _status_of(exc))
    return _to(request, f"/applications/{application_id}/edit#protocol")


@router.get("/applications/{application_id}/protocol")
def download_protocol(request: Request, me: Me, application_id: str) -> Response:
    with session_scope(request.app.state.settings, readonly=True) as s:
        application, _ = apps.get_application(s, me.username, _application_id(application_id))
        attachment = s.get(ApplicationAttachment, application.id)
        if attachment is None:
            raise apps.NoSuchApplication("This application has no protocol attached.")
        content, name = attachment.content, application.attachment_name or "protocol.pdf"
    safe = "".join(c for c in name if c.isalnum() or c in "._- ") or "protocol.pdf"
    return Response(
        content,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{safe}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


def _view(request: Request, me: Me, application_id: str, error: str = "", status: int = 200) -> HTMLResponse:
    settings = request.app.state.settings
    with session_scope(settings, readonly=True) as s:
        application, user = apps.get_application(s, me.username, application_id)
        is_lead = application.lead_id == user.id
        cannot_decide = None if is_lead else apps.may_decide(s, user, application)
        permit = s.execute(select(Permit).where(Permit.application_id == application.id)).scalar_one_or_none()
        entries = {e.name: e for e in catalogue_entries(s)}
        context = {
            "a": application,
            "is_lead": is_lead,
            "can_decide": not is_lead and cannot_decide is None,
            "cannot_decide": cannot_decide,
            "purpose": PURPOSE_LABELS.get(Purpose(application.purpose), application.purpose),
            "entries": entries,
            "messages": [(m.kind, m.author.username, m.created_at, m.text) for m in application.messages],
            "permit": (permit.id, permit.status, permit.expires_at) if permit else None,
        }
        run = latest_run(settings, application.project_slug) if permit else None
        return _render(
            request,
            "application.html",
            me,
            status,
            run=run,
            error=error,
            refresh=bool(run and run["status"] == "running"),
            title=f"Application {application_id}",
            **context,
        )


@router.get("/applications/{application_id}")
def application_page(request: Request, me: Me, application_id: str) -> HTMLResponse:
    return _view(request, me, _application_id(application_id))


def _act(request: Request, me: FormMe, application_id: str, operation, *args: Any) -> Response:
    """Run one operation on the application and go back to its page; a refusal is shown there."""
    try:
        with session_scope(request.app.state.settings) as s:
            operation(s, me.username, application_id, *args)
    except (RegistryError, NotAllowed) as exc:
        if isinstance(exc, apps.NoSuchApplication):
            raise
        status = _status_of(exc)
        return _view(request, me, application_id, str(exc), status)
    return _to(request, f"/applications/{application_id}")


@router.post("/projects/{slug}/applications")
def new_version(request: Request, me: FormMe, slug: str) -> Response:
    """More data or more time: a new version of the project's application, drawn from the last."""
    with session_scope(request.app.state.settings) as s:
        application_id = apps.start_new_version(s, me.username, slug).id
    return _to(request, f"/applications/{application_id}/edit")


@router.post("/applications/{application_id}/{step}")
async def step(request: Request, me: FormMe, application_id: str, step: str) -> Response:
    application_id = _application_id(application_id)
    form = await request.form()
    text = str(form.get("text", ""))
    try:
        revision = _revision(form)
    except apps.StaleForm as exc:
        return _view(request, me, application_id, str(exc), 409)
    operations = {
        "submit": (apps.submit_application,),
        "withdraw": (apps.withdraw_application,),
        "answer": (apps.answer_questions, text),
        "ask": (apps.ask_questions, text),
        "return": (apps.return_application, text),
        "reject": (apps.reject_application, text),
    }
    if step == "approve":
        return _approve(request, me, application_id, revision, form)
    if step not in operations:
        raise apps.NoSuchApplication("There is no such step for an application.")
    operation, *args = operations[step]
    return _act(request, me, application_id, operation, revision, *args)


# -- the custodian -------------------------------------------------------------------------------


QUEUE_PAGE = 25  # applications per page of the queue: a custodian works the oldest first


@router.get("/queue")
def custodian_queue(
    request: Request, me: Me, page: Annotated[int, Query(ge=1, le=1_000_000)] = 1
) -> HTMLResponse:
    with session_scope(request.app.state.settings, readonly=True) as s:
        user = find_user(s, me.username)
        if user is None or not user.is_custodian or user.disabled:
            raise NotAllowed("Only data custodians work the application queue.")
        total = apps.queue_length(s)
        pages = max(1, -(-total // QUEUE_PAGE))
        page = min(page, pages)  # a page past the end (the queue shrank meanwhile) shows the last
        rows = [
            (a, conflict, [d["dataset"] for d in a.datasets])
            for a, conflict in apps.queue(s, user, offset=(page - 1) * QUEUE_PAGE, limit=QUEUE_PAGE)
        ]
        waiting = [
            {
                "id": a.id,
                "project": a.project_slug,
                "version": a.version,
                "title": a.title,
                "lead": a.lead.username,
                "submitted_at": a.submitted_at,
                "datasets": datasets,
                "conflict": conflict,
            }
            for a, conflict, datasets in rows
        ]
    first = (page - 1) * QUEUE_PAGE + 1
    return _render(
        request,
        "queue.html",
        me,
        waiting=waiting,
        title="Applications to decide",
        total=total,
        shown=(first, first + len(waiting) - 1),
        page=page,
        pages=pages,
    )


@router.get("/applications/{application_id}/decide")
def decide_page(request: Request, me: Me, application_id: str) -> HTMLResponse:
    return _decide_page(request, me, _application_id(application_id))


def _decide_page(
    request: Request, me: Me, application_id: str, error: str = "", status: int = 200
) -> HTMLResponse:
    """The decision page; a refused approval redraws it with the reason (never from the URL)."""
    settings = request.app.state.settings
    with session_scope(settings, readonly=True) as s:
        application, user = apps.get_application(s, me.username, application_id)
        why_not = apps.may_decide(s, user, application)
        if why_not:
            raise NotAllowed(f"You cannot decide this application: {why_not}.")
        entries = {e.name: e for e in catalogue_entries(s)}
        return _render(
            request,
            "decide.html",
            me,
            status,
            a=application,
            entries=entries,
            purpose=PURPOSE_LABELS.get(Purpose(application.purpose), application.purpose),
            error=error,
            title=f"Decide {application.id}",
        )


def _decisions(form: FormData, application: Application) -> list[apps.DatasetDecision]:
    decisions = []
    for request in application.datasets:
        name = request["dataset"]
        columns: dict[str, list[str]] = {}
        for table, cols in request["columns"].items():
            kept = [c for c in cols if form.get(f"col:{name}:{table}:{c}")]
            if kept:
                columns[table] = kept
        shift = str(form.get(f"shift:{name}", "")).strip()
        if shift and not shift.isdigit():
            raise RegistryError(f"{name}: the date shift is a whole number of days")
        decisions.append(
            apps.DatasetDecision(
                name,
                approve=bool(form.get(f"approve:{name}")),
                columns=columns,
                remove_opted_out=bool(form.get(f"optout:{name}")),
                pseudonymise=[
                    f"{t}.{c}"
                    for t, cols in columns.items()
                    for c in cols
                    if form.get(f"pseudo:{name}:{t}:{c}")
                ],
                age_bands=bool(form.get(f"ageband:{name}")),
                date_shift_days=int(shift) if shift else None,
                expires_at=_date(str(form.get(f"expires:{name}", "")), f"{name}'s expiry"),
                conditions=str(form.get(f"conditions:{name}", "")).strip(),
            )
        )
    return decisions


def _approve(request: Request, me: FormMe, application_id: str, revision: int, form: FormData) -> Response:
    settings: Settings = request.app.state.settings
    try:
        with session_scope(settings) as s:
            application, _ = apps.get_application(s, me.username, application_id)
            permit = apps.approve_application(
                s,
                me.username,
                application_id,
                revision,
                _decisions(form, application),
                Signer(settings.keys_dir, PERMITS),
                issuer_name=settings.hdab_name,
                note=str(form.get("text", "")),
            )
            slug = permit.claims["project"]
    except (RegistryError, NotAllowed) as exc:
        if isinstance(exc, apps.NoSuchApplication):
            raise
        status = _status_of(exc)
        if isinstance(exc, apps.StaleForm):
            return _view(request, me, application_id, str(exc), status)
        return _decide_page(request, me, application_id, str(exc), status)
    start_run(settings, slug, me.username)  # the approving custodian provisions (an audited role)
    return _to(request, f"/applications/{application_id}#provisioning")


# -- permits and provisioning --------------------------------------------------------------------


@router.get("/permits/keyset.json")
def permit_keyset(request: Request, me: Me) -> JSONResponse:
    signer = Signer(request.app.state.settings.keys_dir, PERMITS)
    signer.ensure_key()
    return JSONResponse(load_keyset(signer.keyset_path))


@router.get("/permits/{permit_id}.jwt")
def permit_record(request: Request, me: Me, permit_id: str) -> Response:
    with session_scope(request.app.state.settings, readonly=True) as s:
        token = apps.readable_permit(s, me.username, permit_id).token
    return Response(
        token + "\n",
        media_type="application/jwt",
        headers={"Content-Disposition": f'attachment; filename="{permit_id}.jwt"'},
    )


@router.get("/projects/{slug}/permit")
def project_permit(request: Request, me: Me, slug: str) -> HTMLResponse:
    """The terms a project's people work under: the permit in force, and those it replaced."""
    if not is_slug(slug):
        raise apps.NoSuchPermit(f"There is no project {slug!r} whose permits you can see.")
    with session_scope(request.app.state.settings, readonly=True) as s:
        project, permits = apps.project_permits(s, me.username, slug)
        rows = [
            {
                "id": p.id,
                "status": p.status,
                "issued_by": p.issued_by.username,
                "issued_at": p.issued_at,
                "expires_at": p.expires_at,
                "claims": p.claims,
                "purpose": PURPOSE_LABELS.get(Purpose(p.claims["purpose"]), p.claims["purpose"]),
            }
            for p in permits
        ]
        title = project.title or project.slug
    in_force = next((r for r in rows if r["status"] == PermitStatus.ISSUED), None)
    return _render(
        request,
        "permit.html",
        me,
        slug=slug,
        project_title=title,
        in_force=in_force,
        earlier=[r for r in rows if r is not in_force],
        title=f"Data permit of {slug}",
    )


@router.get("/applications/{application_id}/provisioning.json")
def provisioning(request: Request, me: Me, application_id: str) -> JSONResponse:
    with session_scope(request.app.state.settings, readonly=True) as s:
        application, _ = apps.get_application(s, me.username, _application_id(application_id))
        slug = application.project_slug if application.status == ApplicationStatus.APPROVED else None
    return JSONResponse(latest_run(request.app.state.settings, slug) if slug else None)

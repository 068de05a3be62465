"""Web hardening of the TRE's services: strict headers, same-origin checks, CSRF tokens.

Forms carry a CSRF token bound to the session and are refused when the browser says the post came
from another site; cookie-authenticated API writes need the token in an X-CSRF-Token header.
Every refusal is audited by the service (its app's `state.audit_refusal(who, path, why)`).
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any
from urllib.parse import urlparse

from fastapi import Depends, Request

from hub.web.sso import Identity, current_identity

PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HSTS = b"max-age=63072000; includeSubDomains"  # as the hub's (browsers ignore it over plain http)


class CSRFRefused(Exception):
    pass


def same_origin(request: Request) -> bool:
    """Browsers label cross-site requests; refuse them whatever cookies came along."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
    return urlparse(origin).netloc == host


def refuse_csrf(request: Request, who: str, why: str) -> None:
    request.app.state.audit_refusal(who, request.url.path, why)
    raise CSRFRefused(why)


async def form_identity(request: Request, me: Annotated[Identity, Depends(current_identity)]) -> Identity:
    if not same_origin(request):
        refuse_csrf(request, me.username, "cross-site form post")
    form = await request.form()
    token = str(form.get("_csrf", ""))
    if not me.csrf or not hmac.compare_digest(token, me.csrf):
        refuse_csrf(request, me.username, "missing or wrong CSRF token")
    return me


async def api_identity(request: Request, me: Annotated[Identity, Depends(current_identity)]) -> Identity:
    if request.method not in ("GET", "HEAD") and me.via == "cookie":
        token = request.headers.get("x-csrf-token", "")
        if not same_origin(request) or not me.csrf or not hmac.compare_digest(token, me.csrf):
            refuse_csrf(request, me.username, "cookie-authenticated API write without a valid X-CSRF-Token")
    return me


Me = Annotated[Identity, Depends(current_identity)]
FormMe = Annotated[Identity, Depends(form_identity)]
ApiMe = Annotated[Identity, Depends(api_identity)]


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
                    (b"strict-transport-security", HSTS),
                ]
                if b"content-security-policy" not in present:
                    defaults.append((b"x-frame-options", b"DENY"))
                headers += [(k, v) for k, v in defaults if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """Refuse a request body larger than `max_bytes` before it is parsed, so an oversized upload is
    never spooled to disk: at once by its Content-Length, else by counting a chunked body as it
    arrives. The refusal is an HTTP 413 the service's error page draws with `hint`."""

    def __init__(self, app: Any, max_bytes: int, hint: str):
        self.app = app
        self.max_bytes = max_bytes
        self.hint = hint

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length", b"0")
        too_large = not declared.isdigit() or int(declared) > self.max_bytes
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            if too_large:  # refused before a byte of the body is read
                raise self._refusal()
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise self._refusal()
            return message

        await self.app(scope, counted, send)

    def _refusal(self) -> Exception:
        from starlette.exceptions import HTTPException  # FastAPI passes it through its body parsing

        mib = self.max_bytes / (1024 * 1024)
        return HTTPException(
            413, f"That upload is larger than the {mib:g} MiB this service accepts. {self.hint}"
        )

"""The guard: an aiohttp proxy on the host between the public proxy and every workspace server.

The hub's proxy routes each workspace to the guard (the spawner returns the guard's address), and
the host firewall lets only the guard's group open connections to the workspace network, so no
browser byte reaches a workspace, or leaves one, without passing here. Per user x project it
applies the rules of hub.guard.routes (routes, contents), hub.guard.budget (bytes per day) and
hub.guard.kernel_wire (reading kernel messages), records every code run in the code log and audits
what it refuses or cuts (hub.guard.recorder).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict

from hub.guard import kernel_wire as wire
from hub.guard.budget import Budget, BudgetState, Workspace
from hub.guard.recorder import Recorder
from hub.guard.routes import (
    Kind,
    Target,
    body_cap,
    classify,
    is_control,
    parse_target,
    read_decision,
    refusal_message,
    suffix_refusal,
)
from hub.guard.upstream import Address, Upstreams
from hub.host.swarm import LINK_HEADER, link_secret
from hub.kernel import codelog
from hub.kernel.audit_actions import AuditAction
from hub.kernel.clock import utcnow
from hub.kernel.db import session_scope
from hub.kernel.settings import Settings
from hub.registry.access import Limits, project_limits
from hub.registry.lookup import get_project

log = logging.getLogger("tre.guard")
HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Content-Length",
        "Host",
    )
)
WS_HANDSHAKE = frozenset(
    h.lower()
    for h in (
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Extensions",
        "Sec-WebSocket-Protocol",
    )
)
ANSWER_CAP = 8 * 1024 * 1024  # the largest API answer the guard buffers (settings, workspaces)
REQUEST_CAP = 1024 * 1024  # the largest request body other than an upload
LIMITS_SECONDS = 30.0
HEALTH_PATH = "/_guard/health"


def cut_notice(limits: Limits) -> str:
    return (
        f"[TRE] Output withheld: this workspace has sent its {limits.daily_bytes / 1e6:.0f} MB for today "
        "to the browser. Your code still runs and its results stay in the workspace: write them to "
        "files and ask for a release. The allowance starts again at 00:00 UTC."
    )


async def read_capped(stream: aiohttp.StreamReader, cap: int) -> bytes | None:
    """The whole body, or None as soon as it is longer than `cap` (the rest is not read)."""
    data = bytearray()
    async for chunk in stream.iter_chunked(256 * 1024):
        data += chunk
        if len(data) > cap:
            return None
    return bytes(data)


def passed_headers(request: web.Request, proof: str = "", encoded: bool = True) -> CIMultiDict[str]:
    """The request's headers for the server behind: no hop-by-hop ones, and no link secret unless
    `proof` adds the right one (a browser or a workspace never passes one on); `encoded` False asks
    for an uncompressed answer (the guard reads it)."""
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in request.headers.items():
        low = key.lower()
        if low in HOP_BY_HOP or low == LINK_HEADER.lower() or (not encoded and low == "accept-encoding"):
            continue
        out.add(key, value)
    out["Host"] = request.host
    if proof:
        out[LINK_HEADER] = proof
    return out


def socket_handshake(request: web.Request, proof: str = "") -> tuple[list[str], CIMultiDict[str]]:
    """(the subprotocols the browser offers, the headers to open the websocket behind with)."""
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    headers = CIMultiDict(
        (k, v)
        for k, v in passed_headers(request, proof, encoded=False).items()
        if k.lower() not in WS_HANDSHAKE
    )
    return offered, headers


def answer_headers(upstream: aiohttp.ClientResponse) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP)


async def stream_back(request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    """The upstream answer, passed on to the client as it comes."""
    response = web.StreamResponse(status=upstream.status, headers=answer_headers(upstream))
    if upstream.content_length is not None:
        response.content_length = upstream.content_length
    await response.prepare(request)
    async for chunk in upstream.content.iter_chunked(64 * 1024):
        await response.write(chunk)
    await response.write_eof()
    return response


@dataclass
class _Limits:
    at: float
    limits: Limits


class Guard:
    def __init__(self, settings: Settings, upstreams: Upstreams, recorder: Recorder, budget: Budget) -> None:
        self.settings, self.upstreams, self.recorder, self.budget = settings, upstreams, recorder, budget
        self._limits: dict[str, _Limits] = {}
        self.client: aiohttp.ClientSession | None = None
        self.sockets: dict[Workspace, set[web.WebSocketResponse]] = {}
        self.link_secret = link_secret(settings) if settings.engine == "swarm" else ""

    # --- lifecycle ---------------------------------------------------------------------------------

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=64, keepalive_timeout=30)
        timeout = aiohttp.ClientTimeout(total=None, connect=5, sock_read=None)
        self.client = aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
        )

    async def close(self) -> None:
        if self.client:
            await self.client.close()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_upload_bytes + 2 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    # --- limits and budget ------------------------------------------------------------------------

    def _read_limits(self, project: str) -> Limits:
        with session_scope(self.settings, readonly=True) as session:
            return project_limits(get_project(session, project))

    async def limits(self, project: str) -> Limits:
        hit = self._limits.get(project)
        if hit and time.monotonic() - hit.at < LIMITS_SECONDS:
            return hit.limits
        try:
            limits = await asyncio.to_thread(self._read_limits, project)
        except Exception:  # unknown project, database down: the defaults, never none
            limits = hit.limits if hit else Limits()
        self._limits[project] = _Limits(time.monotonic(), limits)
        return limits

    def budget_state(self, ws: Workspace, limits: Limits) -> BudgetState:
        return self.budget.state(ws, limits.daily_bytes, utcnow())

    def note_cut(self, target: Target, limits: Limits, what: str) -> None:
        ws = (target.user, target.project)
        if self.budget.note_cut(ws, utcnow()):
            self.recorder.audit(
                target.user,
                target.project,
                AuditAction.GUARD_BUDGET_CUT,
                {
                    "daily_bytes": limits.daily_bytes,
                    "sent": self.budget.usage(ws, utcnow()).sent,
                    "first": what,
                },
            )

    # --- answers of the guard's own ----------------------------------------------------------------

    @staticmethod
    def _wants_json(request: web.Request, target: Target) -> bool:
        return target.rest.startswith(("api/", "lab/api/")) or "text/html" not in request.headers.get(
            "Accept", ""
        )

    def page(self, request: web.Request, target: Target | None, status: int, title: str, message: str):
        if target is not None and self._wants_json(request, target):
            return web.json_response(
                {"message": message, "reason": title}, status=status, headers={"X-TRE-Guard": title}
            )
        body = (
            "<!doctype html><html><head><meta charset='utf-8'><title>TRE: "
            f"{html.escape(title)}</title></head><body style='font-family: sans-serif; max-width: 40em; "
            f"margin: 3em auto'><h1>{html.escape(title.capitalize())}</h1><p>{html.escape(message)}</p>"
            "</body></html>"
        )
        return web.Response(
            text=body, status=status, content_type="text/html", headers={"X-TRE-Guard": title}
        )

    def refuse(self, request: web.Request, target: Target, reason: str, status: int = 403, **details: Any):
        self.recorder.refusal(
            target.user,
            target.project,
            AuditAction.GUARD_REFUSED,
            reason,
            {"method": request.method, "path": "/" + target.rest, **details},
        )
        return self.page(request, target, status, "refused", refusal_message(reason))

    def cut(self, request: web.Request, target: Target, limits: Limits):
        self.note_cut(target, limits, "/" + target.rest)
        return self.page(request, target, 403, "daily budget spent", cut_notice(limits))

    # --- the request path --------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == HEALTH_PATH:
            return web.json_response({"ok": True, "recording": self.recorder.healthy})
        target = parse_target(request.path)
        if target is None:
            return self.page(request, None, 404, "not found", "This address is not a workspace.")
        if not self._host_ok(request, target):
            return self.refuse(request, target, "a request for another origin", host=request.host)
        route = classify(request.method, target.rest)
        if route.kind is None:
            return self.refuse(request, target, route.reason)
        addr = await self.upstreams.address(target.user, target.project)
        if addr is None:
            return self.page(
                request,
                target,
                503,
                "not running",
                "This workspace is not running: start it from the hub's home page.",
            )
        if route.kind is Kind.STATIC:
            return await self.stream(request, addr)
        if route.kind is Kind.NO_EXPORTERS:
            return web.json_response({})
        limits = await self.limits(target.project)
        state = self.budget_state((target.user, target.project), limits)
        if state is BudgetState.CLOSED or (state is BudgetState.SPENT and not is_control(target.rest)):
            return self.cut(request, target, limits)
        if route.kind is Kind.KERNEL_CHANNELS:
            return await self.kernel_socket(request, target, addr, limits)
        if route.kind is Kind.EVENTS:
            return await self.kernel_socket(request, target, addr, limits, read_messages=False)
        if route.kind is Kind.CONTENTS:
            return await self.contents(request, target, addr, limits)
        return await self.buffered(request, target, addr, limits, await self._body(request, REQUEST_CAP))

    def _host_ok(self, request: web.Request, target: Target) -> bool:
        host = (request.host or "").rsplit(":", 1)[0].lower()
        domain = self.settings.domain.lower()
        if host == domain or host.endswith("." + domain):
            return host == f"{target.user}.{domain}"
        return host in ("127.0.0.1", "localhost", "::1", "[::1]")  # the hub's own checks

    def _proof(self, addr: Address) -> str:
        return self.link_secret if addr.through_link else ""

    @staticmethod
    def _url(addr: Address, request: web.Request) -> str:
        return f"http://{addr.host}:{addr.port}{request.raw_path}"

    @staticmethod
    async def _body(request: web.Request, cap: int) -> bytes | None:
        if not request.body_exists:
            return None
        body = await read_capped(request.content, cap)
        if body is None:
            raise web.HTTPRequestEntityTooLarge(max_size=cap, actual_size=cap + 1)
        return body

    async def stream(self, request: web.Request, addr: Address) -> web.StreamResponse:
        """The image's static assets: passed through as they come, not counted."""
        assert self.client is not None
        async with self.client.request(
            request.method,
            self._url(addr, request),
            headers=passed_headers(request, self._proof(addr)),
            allow_redirects=False,
        ) as upstream:
            return await stream_back(request, upstream)

    async def _fetch(self, request: web.Request, addr: Address, body: bytes | None, cap: int):
        """(status, headers, body) of the upstream answer, refusing bodies over `cap` (None then)."""
        assert self.client is not None
        async with self.client.request(
            request.method,
            self._url(addr, request),
            headers=passed_headers(request, self._proof(addr), encoded=False),
            data=body,
            allow_redirects=False,
        ) as upstream:
            data = await read_capped(upstream.content, cap)
            return upstream.status, answer_headers(upstream), data

    def _send(self, target: Target, request: web.Request, limits: Limits, status: int, headers, data: bytes):
        """The answer, if it fits the day's budget (bookkeeping may use the overdraft); else the cut."""
        key = f"{request.method} {request.path_qs}"
        control = is_control(target.rest)
        ws = (target.user, target.project)
        if not self.budget.admit_answer(ws, key, data, limits.daily_bytes, utcnow(), control):
            return self.cut(request, target, limits)
        return web.Response(status=status, headers=headers, body=data)

    async def buffered(
        self, request: web.Request, target: Target, addr: Address, limits: Limits, body: bytes | None
    ):
        try:
            status, headers, data = await self._fetch(request, addr, body, ANSWER_CAP)
        except aiohttp.ClientError:
            self.upstreams.forget(target.user, target.project)
            return self.page(
                request, target, 502, "not reachable", "The workspace did not answer; try again."
            )
        if data is None:
            return self.refuse(request, target, "an answer larger than the guard passes")
        return self._send(target, request, limits, status, headers, data)

    async def contents(self, request: web.Request, target: Target, addr: Address, limits: Limits):
        path = target.rest[len("api/contents") :].lstrip("/")
        method = request.method
        if method in ("GET", "HEAD"):
            wants_content = request.query.get("content", "1") not in ("0", "false")
            refused = suffix_refusal(path) if wants_content else None
            if refused:
                return self.refuse(request, target, refused, file=path)
            try:
                status, headers, data = await self._fetch(request, addr, None, body_cap(limits.read_bytes))
            except aiohttp.ClientError:
                return self.page(
                    request, target, 502, "not reachable", "The workspace did not answer; try again."
                )
            if data is None:
                return self.refuse(
                    request, target, f"a file larger than {limits.read_bytes} bytes", file=path
                )
            if status == 200 and wants_content and method == "GET":
                try:
                    model = json.loads(data)
                except ValueError:
                    model = None
                decision = read_decision(model, limits.read_bytes)
                if not decision.allowed:
                    return self.refuse(request, target, decision.reason, file=path)
            return self._send(target, request, limits, status, headers, data)
        cap = self.settings.max_upload_bytes + 1024 * 1024 if method == "PUT" else REQUEST_CAP
        try:
            body = await self._body(request, cap)
        except web.HTTPRequestEntityTooLarge:
            return self.refuse(
                request,
                target,
                f"an upload larger than {self.settings.max_upload_bytes} bytes",
                413,
                file=path,
            )
        if method == "PUT" and body:
            self._audit_upload(target, path, body)
        return await self.buffered(request, target, addr, limits, body)

    def _audit_upload(self, target: Target, path: str, body: bytes) -> None:
        """Uploads (base64 or chunked PUTs, as JupyterLab's upload sends them) are audited when done."""
        try:
            model = json.loads(body)
        except ValueError:
            return
        if not isinstance(model, dict):
            return
        chunk = model.get("chunk")
        is_upload = model.get("format") == "base64" or chunk is not None
        if is_upload and chunk in (None, -1):
            self.recorder.audit(
                target.user,
                target.project,
                AuditAction.GUARD_UPLOAD,
                {"path": path, "request_bytes": len(body), "chunked": chunk is not None},
            )

    # --- websockets ---------------------------------------------------------------------------------

    async def kernel_socket(
        self, request: web.Request, target: Target, addr: Address, limits: Limits, read_messages: bool = True
    ) -> web.StreamResponse:
        assert self.client is not None
        offered, headers = socket_handshake(request, self._proof(addr))
        try:
            upstream = await self.client.ws_connect(
                self._url(addr, request),
                protocols=offered,
                headers=headers,
                autoping=True,
                max_msg_size=0,
                compress=0,
            )
        except aiohttp.WSServerHandshakeError as exc:
            return web.Response(status=exc.status, text=exc.message)
        except aiohttp.ClientError:
            return self.page(
                request, target, 502, "not reachable", "The workspace did not answer; try again."
            )
        protocol = upstream.protocol or ""
        browser = web.WebSocketResponse(
            protocols=(protocol,) if protocol else (),
            autoping=True,
            compress=False,
            max_msg_size=self.settings.max_upload_bytes,
        )
        await browser.prepare(request)
        ws = (target.user, target.project)
        self.sockets.setdefault(ws, set()).add(browser)
        kernel_id = target.rest.split("/")[2] if read_messages else ""
        try:
            down = asyncio.create_task(
                self._downstream(upstream, browser, target, limits, protocol, read_messages)
            )
            await self._upstream(browser, upstream, target, kernel_id, protocol, read_messages)
            down.cancel()
        finally:
            self.sockets.get(ws, set()).discard(browser)
            await upstream.close()
            await browser.close()
        return browser

    async def _upstream(self, browser, upstream, target: Target, kernel_id: str, protocol: str, read: bool):
        """Browser to kernel: every code run recorded before it is forwarded; unreadable frames dropped."""
        async for frame in browser:
            if frame.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            if read:
                try:
                    msg = wire.parse(frame.data, protocol)
                except wire.WireError as exc:
                    self.recorder.refusal(
                        target.user,
                        target.project,
                        AuditAction.GUARD_REFUSED,
                        "an unreadable kernel message",
                        {"kernel": kernel_id, "error": str(exc)[:200]},
                    )
                    continue
                run = wire.code_in(msg)
                if run is not None:
                    if not self.recorder.accepting:
                        text = (
                            "[TRE] The code log cannot be written, so no code runs now. Try again shortly.\n"
                        )
                        notice = wire.reply_to(msg, "stream", {"name": "stderr", "text": text})
                        await self._send_frame(browser, notice, protocol)
                        continue
                    self.recorder.code_run(
                        codelog.Run(
                            utcnow(),
                            target.user,
                            target.project,
                            kernel_id,
                            run.session,
                            run.msg_id,
                            run.kind,
                            run.code,
                        )
                    )
            if frame.type == WSMsgType.TEXT:
                await upstream.send_str(frame.data)
            else:
                await upstream.send_bytes(frame.data)

    @staticmethod
    async def _send_frame(browser, msg: wire.Message, protocol: str) -> None:
        data = wire.serialize(msg, protocol)
        if isinstance(data, str):
            await browser.send_str(data)
        else:
            await browser.send_bytes(data)

    async def _downstream(self, upstream, browser, target: Target, limits: Limits, protocol: str, read: bool):
        """Kernel to browser, counted. Output that does not fit the day's budget is cut (all of that
        cell's output from then on, with one notice); bookkeeping messages use the overdraft; when
        that is gone too, the channel closes."""
        ws = (target.user, target.project)
        allowance = limits.daily_bytes
        cut_requests: set[str] = set()
        async for frame in upstream:
            if frame.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            data = frame.data
            size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
            now = utcnow()
            if not cut_requests and self.budget.admit(ws, size, allowance, now):
                await (browser.send_str(data) if frame.type == WSMsgType.TEXT else browser.send_bytes(data))
                continue
            msg = None
            if read:
                with contextlib.suppress(wire.WireError):
                    msg = wire.parse(data, protocol)
            parent = str(msg.parent_header.get("msg_id", "")) if msg else ""
            passes = False
            if msg and msg.msg_type in wire.OUTPUT_TYPES and parent not in cut_requests:
                passes = self.budget.admit(ws, size, allowance, now)
            elif msg and msg.msg_type in wire.PASS_WHEN_CUT:
                passes = self.budget.admit(ws, size, allowance, now, control=True)
                if not passes:  # the overdraft is gone too
                    msg = None
            if passes:
                await (browser.send_str(data) if frame.type == WSMsgType.TEXT else browser.send_bytes(data))
                continue
            if msg is None:
                self.note_cut(target, limits, "browser channel closed")
                await browser.close(code=1008, message=b"daily budget spent")
                return
            self.note_cut(target, limits, f"kernel {msg.msg_type}")
            if msg.msg_type in wire.OUTPUT_TYPES and parent not in cut_requests:
                cut_requests.add(parent)
                notice = wire.reply_like(msg, "stream", {"name": "stderr", "text": cut_notice(limits) + "\n"})
                await self._send_frame(browser, notice, protocol)

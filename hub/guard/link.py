"""The guard's link to a swarm's other nodes (TRE_ENGINE=swarm): `python -m hub.guard.link` on each.

The guard runs on the hub's node; it checks, records and counts every browser request to a
workspace there, whichever node runs the workspace. A workspace whose task the swarm placed on
another node is reached through that node's link, a host process like the guard and, like it,
outside every container's reach (the node's firewall lets only the guard's group reach the
workspace bridge). A link has two doors:

- the workspace door, on the node's swarm address at TRE_LINK_PORT: requests from the guard only
  (the shared secret in hub.host.swarm.LINK_HEADER) for `/user/<user>/<project>/...` of a workspace
  running on this node, passed to its container unchanged, websockets included;
- the hub relay, on the node's workspace-bridge gateway at TRE_HUB_PORT, where a workspace finds the
  hub API on the hub's node: `/hub/api/...` passed to the hub door.

The hub door runs inside the guard on the hub's node, on its swarm address at TRE_LINK_PORT:
`/hub/api/...` from the links only, passed to the hub API. Nothing here checks a route or counts a
byte: the guard did, and the hub API checks each workspace's own token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable

import aiohttp
import docker
from aiohttp import WSMsgType, web

from hub.guard.app import passed_headers, socket_handshake, stream_back
from hub.guard.routes import parse_target, path_trick
from hub.guard.sites import listening_socket, serve_sites, stop_on_signals, take_guard_group
from hub.guard.upstream import Upstreams
from hub.host.network import gateway_ip
from hub.host.swarm import LINK_HEADER, LINK_HEALTH, link_secret
from hub.kernel.settings import Settings, get_settings

log = logging.getLogger("tre.link")
HUB_API = "/hub/api"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_hub_api(raw_path: str) -> bool:
    """`raw_path` (as it is passed on, without the query) is the hub API's and means nothing else."""
    return path_trick(raw_path) is None and (raw_path == HUB_API or raw_path.startswith(HUB_API + "/"))


class Passer:
    """Passes a request on to another server as it is, answer and websocket included."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.client: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self.client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=64, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=None, connect=5, sock_read=None),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self.client:
            await self.client.close()

    def authorised(self, request: web.Request) -> bool:
        return hmac.compare_digest(request.headers.get(LINK_HEADER, "").encode(), self.secret.encode())

    async def pass_on(self, request: web.Request, url: str, prove: bool = False) -> web.StreamResponse:
        """`request` to `url`; `prove` adds the shared secret (for the next door)."""
        assert self.client is not None
        proof = self.secret if prove else ""
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._socket(request, url, proof)
        body = await request.read() if request.body_exists else None
        try:
            upstream = await self.client.request(
                request.method, url, headers=passed_headers(request, proof), data=body, allow_redirects=False
            )
        except aiohttp.ClientError as exc:
            return web.Response(status=502, text=f"not reachable: {exc.__class__.__name__}")
        async with upstream:
            return await stream_back(request, upstream)

    async def _socket(self, request: web.Request, url: str, proof: str) -> web.StreamResponse:
        assert self.client is not None
        offered, headers = socket_handshake(request, proof)
        try:
            upstream = await self.client.ws_connect(
                url,
                protocols=offered,
                headers=headers,
                max_msg_size=0,
                compress=0,
            )
        except aiohttp.WSServerHandshakeError as exc:
            return web.Response(status=exc.status, text=exc.message)
        except aiohttp.ClientError as exc:
            return web.Response(status=502, text=f"not reachable: {exc.__class__.__name__}")
        downstream = web.WebSocketResponse(
            protocols=(upstream.protocol,) if upstream.protocol else (), compress=False, max_msg_size=0
        )
        await downstream.prepare(request)

        async def pump(source, sink) -> None:
            async for frame in source:
                if frame.type == WSMsgType.TEXT:
                    await sink.send_str(frame.data)
                elif frame.type == WSMsgType.BINARY:
                    await sink.send_bytes(frame.data)
                else:
                    return

        pumps = [
            asyncio.create_task(pump(upstream, downstream)),
            asyncio.create_task(pump(downstream, upstream)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await upstream.close()
            await downstream.close()
        return downstream


def secret_door(settings: Settings, passer: Passer, refusal: str, inner: Handler) -> Handler:
    """`inner` for requests that carry the shared secret; their health check for `tre network status`."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if not passer.authorised(request):
            return web.Response(status=403, text=refusal)
        if request.path == LINK_HEALTH:
            return web.json_response({"network": settings.network})
        return await inner(request)

    return handle


def workspace_door(settings: Settings, passer: Passer, upstreams: Upstreams) -> Handler:
    """For the guard: the node's own workspaces."""

    async def to_workspace(request: web.Request) -> web.StreamResponse:
        target = parse_target(request.path)
        if target is None:
            return web.Response(status=404, text="not a workspace address")
        addr = await upstreams.address(target.user, target.project)
        if addr is None:
            return web.Response(status=503, text="this workspace is not running on this node")
        return await passer.pass_on(request, f"http://{addr.host}:{addr.port}{request.raw_path}")

    return secret_door(settings, passer, "only the TRE's guard may use this link", to_workspace)


def hub_relay(passer: Passer, hub_door_url: str) -> Handler:
    """For the node's workspaces: the hub API, at the hub's node's door."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if not is_hub_api(request.rel_url.raw_path):
            return web.Response(status=404, text="only the hub API is here")
        return await passer.pass_on(request, f"{hub_door_url}{request.raw_path}", prove=True)

    return handle


def hub_door(settings: Settings, passer: Passer, hub_api_url: str) -> Handler:
    """The guard's door for the nodes' hub relays, on the hub's node: to the hub API."""

    async def to_hub_api(request: web.Request) -> web.StreamResponse:
        if not is_hub_api(request.rel_url.raw_path):
            return web.Response(status=404, text="only the hub API is here")
        return await passer.pass_on(request, f"{hub_api_url}{request.raw_path}")

    return secret_door(settings, passer, "only a TRE node's link may use this door", to_hub_api)


def application(settings: Settings, handle: Handler) -> web.Application:
    app = web.Application(client_max_size=settings.max_upload_bytes + 2 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def swarm_addresses() -> tuple[str, list[str]]:
    """This node's swarm address and the managers' addresses, from the local engine."""
    swarm = docker.from_env(timeout=10).info().get("Swarm") or {}
    managers = [m["Addr"].rsplit(":", 1)[0] for m in swarm.get("RemoteManagers") or []]
    return swarm.get("NodeAddr", ""), managers


async def serve(settings: Settings, node_address: str, hub_address: str) -> None:
    passer = Passer(link_secret(settings))
    await passer.open()
    upstreams = Upstreams(settings, remote_nodes=False)
    upstreams.watch()
    stopping = stop_on_signals()
    sites = [
        (application(settings, workspace_door(settings, passer, upstreams)),
         listening_socket(node_address, settings.link_port)),
        (application(settings, hub_relay(passer, f"http://{hub_address}:{settings.link_port}")),
         listening_socket(gateway_ip(settings), settings.hub_port)),
    ]  # fmt: skip
    log.info(
        "workspace door on %s:%d; hub relay on %s:%d to %s",
        node_address, settings.link_port, gateway_ip(settings), settings.hub_port, hub_address,
    )  # fmt: skip
    try:
        await serve_sites(sites, stopping)
    finally:
        await passer.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hub.guard.link", description=__doc__.split("\n")[0])
    parser.add_argument("--hub-address", help="the hub's node's swarm address (default: the one manager)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s %(asctime)s tre-link] %(message)s")
    settings = get_settings()
    if settings.engine != "swarm":
        raise SystemExit("the guard's link is for a swarm (TRE_ENGINE=swarm); one host needs none")
    node_address, managers = swarm_addresses()
    hub_address = args.hub_address or (managers[0] if len(managers) == 1 else "")
    if not (node_address and hub_address):
        raise SystemExit(
            "cannot tell this node's or the hub's swarm address: is this engine in the swarm? "
            "With several managers, name the hub's node with --hub-address"
        )
    take_guard_group(settings)  # the node's firewall lets only this group reach the workspaces
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, node_address, hub_address))


if __name__ == "__main__":
    main()

"""The guard's link (hub.guard.link) between real aiohttp servers on loopback: what each door lets
through, to where, with which headers. Which container a workspace is, is Docker's part: here a
stand-in answers with a local server's address (tests/integration/test_swarm_nodes.py runs it all
on a second Docker node)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer
from yarl import URL

from hub.guard.link import Passer, application, hub_door, hub_relay, workspace_door
from hub.guard.upstream import Address
from hub.host.swarm import LINK_HEADER, LINK_HEALTH
from hub.kernel.settings import Settings

SECRET = "a" * 64


class Behind:
    """The server behind a door (a workspace or the hub API): it notes what reached it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None, int]] = []  # (path with query, link header, body size)

    async def echo(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            ws = web.WebSocketResponse(protocols=("v1.kernel.websocket.jupyter.org",))
            await ws.prepare(request)
            async for frame in ws:
                if frame.type == WSMsgType.TEXT:
                    await ws.send_str("echo " + frame.data)
                elif frame.type == WSMsgType.BINARY:
                    await ws.send_bytes(frame.data[::-1])
            return ws
        body = await request.read()
        self.seen.append((request.raw_path, request.headers.get(LINK_HEADER), len(body)))
        return web.json_response(
            {"path": request.raw_path, "host": request.host}, headers={"X-From": "behind"}
        )


class OneWorkspace:
    """Stands in for hub.guard.upstream.Upstreams: alice's p1 runs at `port`, nothing else."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def address(self, user: str, project: str) -> Address | None:
        return Address("127.0.0.1", self.port, "c0ffee") if (user, project) == ("alice", "p1") else None


@contextlib.asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def chain(tmp_path) -> AsyncIterator[tuple[Behind, str, str, str]]:
    """(what is behind, the workspace door, the hub door, the hub relay), as on two nodes."""
    settings = Settings(root=tmp_path, network="tre-net")
    behind = Behind()
    passer = Passer(SECRET)
    await passer.open()
    upstream = web.Application(client_max_size=16 * 1024 * 1024)
    upstream.router.add_route("*", "/{tail:.*}", behind.echo)
    try:
        async with served(upstream) as behind_url:
            port = int(behind_url.rsplit(":", 1)[1])
            door = application(settings, workspace_door(settings, passer, OneWorkspace(port)))
            async with (
                served(door) as door_url,
                served(application(settings, hub_door(settings, passer, behind_url))) as hub_door_url,
                served(application(settings, hub_relay(passer, hub_door_url))) as relay_url,
            ):
                yield behind, door_url, hub_door_url, relay_url
    finally:
        await passer.close()


def run(coro):
    return asyncio.run(coro)


def test_the_workspace_door_passes_only_the_guards_requests_for_its_own_workspaces(tmp_path):
    async def go():
        async with chain(tmp_path) as (behind, door, _, _), aiohttp.ClientSession() as client:
            path = "/user/alice/p1/api/contents/a%2Fb.ipynb?content=1"
            for headers in ({}, {LINK_HEADER: "b" * 64}, {LINK_HEADER: SECRET[:-1]}, {LINK_HEADER: ""}):
                for url in (door + path, door + LINK_HEALTH):
                    async with client.get(url, headers=headers) as r:
                        assert r.status == 403, (url, headers)
            assert behind.seen == []
            proof = {LINK_HEADER: SECRET}
            async with client.get(door + LINK_HEALTH, headers=proof) as r:
                assert await r.json() == {"network": "tre-net"}
            async with client.put(
                door + path, headers={**proof, "Host": "alice.tre.test"}, data=b"x" * 3_000_000
            ) as r:
                assert r.status == 200 and r.headers["X-From"] == "behind"
                assert await r.json() == {"path": path, "host": "alice.tre.test"}
            # The secret goes no further than the door: the workspace never sees it.
            assert behind.seen == [(path, None, 3_000_000)]
            async with client.get(door + "/user/alice/p2/api/status", headers=proof) as r:
                assert r.status == 503  # not a workspace of this node
            async with client.get(door + "/hub/api/users", headers=proof) as r:
                assert r.status == 404  # not a workspace address at all
            assert len(behind.seen) == 1

    run(go())


def test_the_workspace_door_passes_websockets_both_ways_with_their_subprotocol(tmp_path):
    async def go():
        async with chain(tmp_path) as (_, door, _, _), aiohttp.ClientSession() as client:
            url = door + "/user/alice/p1/api/kernels/k1/channels"
            async with client.ws_connect(
                url, headers={LINK_HEADER: SECRET}, protocols=["v1.kernel.websocket.jupyter.org"]
            ) as ws:
                assert ws.protocol == "v1.kernel.websocket.jupyter.org"
                await ws.send_str("hello")
                assert (await ws.receive(timeout=5)).data == "echo hello"
                await ws.send_bytes(b"\x00\x01\x02")
                assert (await ws.receive(timeout=5)).data == b"\x02\x01\x00"
            try:
                await client.ws_connect(url)
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 403
            else:
                raise AssertionError("a websocket without the secret was accepted")

    run(go())


def test_the_hub_relay_passes_the_hub_api_alone_through_the_hub_door(tmp_path):
    async def go():
        async with chain(tmp_path) as (behind, _, hub_door_url, relay), aiohttp.ClientSession() as client:
            # A workspace's requests: the hub API, with its own token, reaches the hub API.
            for path in ("/hub/api", "/hub/api/user?x=1"):
                async with client.get(relay + path, headers={"Authorization": "token t"}) as r:
                    assert r.status == 200 and (await r.json())["path"] == path
            # Anything else stops at the relay: the hub's pages, a workspace, a look-alike, a climb.
            for path in (
                "/hub/login",
                "/hub/apix",
                "/user/alice/p1/api/status",
                # Climbs out of /hub/api, sent as written (`encoded`: the client normalises nothing).
                "/hub/api/../../user/alice/p1/",
                "/hub/api/%2e%2e/%2e%2e/hub/login",
                "/hub/api%2f..%2f..%2fhub/login",
                "/hub/api/.%2E/login",
                "/hub/api/..\\..\\hub/login",
            ):
                async with client.get(URL(relay + path, encoded=True)) as r:
                    assert r.status == 404, path
            # The hub door itself takes only the relays (the secret), and only the hub API.
            for headers in ({}, {LINK_HEADER: "b" * 64}):
                async with client.get(hub_door_url + "/hub/api/user", headers=headers) as r:
                    assert r.status == 403
            async with client.get(hub_door_url + "/hub/login", headers={LINK_HEADER: SECRET}) as r:
                assert r.status == 404
            assert [(p, link) for p, link, _ in behind.seen] == [
                ("/hub/api", None),
                ("/hub/api/user?x=1", None),
            ]

    run(go())

"""How the guard and its links run as processes: the guard's group, listening sockets, stopping."""

from __future__ import annotations

import asyncio
import os
import signal
import socket

from aiohttp import web

from hub.host.network import guard_gid
from hub.kernel.settings import Settings

IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)  # Linux: bind an address the host does not have yet


def take_guard_group(settings: Settings) -> None:
    """Become the guard's group: the host firewall lets only it reach the workspace network."""
    gid = guard_gid(settings)
    if gid is None:
        raise SystemExit(f"the group {settings.guard_group} does not exist: run `tre network setup`")
    if os.getegid() != gid:
        os.setgroups([])
        os.setgid(gid)


def stop_on_signals() -> asyncio.Event:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    return stopping


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening socket on `host`, which need not be up yet (a node's bridge exists only while a
    task is attached to it; the anchor's task attaches soon after the node joins)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.setblocking(False)
    return sock


async def serve_sites(sites: list[tuple[web.Application, socket.socket]], stopping: asyncio.Event) -> None:
    """Serve each app on its socket until `stopping` is set."""
    runners = []
    for app, sock in sites:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        runners.append(runner)
    await stopping.wait()
    for runner in runners:
        await runner.cleanup()

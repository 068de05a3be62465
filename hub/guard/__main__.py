"""`python -m hub.guard`: the guard, a JupyterHub managed service (restarted by the hub if it dies, and
dying with the hub).

It takes the guard's group before it opens any connection: the host firewall lets only that group
reach the workspace network (hub.host.network).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from aiohttp import web

from hub.guard.app import Guard
from hub.guard.budget import Budget
from hub.guard.link import Passer, application, hub_door, swarm_addresses
from hub.guard.recorder import Recorder
from hub.guard.sites import listening_socket, serve_sites, stop_on_signals, take_guard_group
from hub.guard.upstream import Upstreams
from hub.host.network import gateway_ip
from hub.kernel.lifecycle import die_with_parent
from hub.kernel.settings import Settings, get_settings

log = logging.getLogger("tre.guard")


def hub_door_site(settings: Settings, passer: Passer) -> tuple[web.Application, socket.socket] | None:
    """On a swarm with other nodes' links: the door their hub relays use, on this node's address."""
    if settings.engine != "swarm":
        return None
    node_address, _ = swarm_addresses()
    if not node_address:  # never "": that would listen on every address
        log.warning("this engine is in no swarm: no door for the nodes' links")
        return None
    log.info("hub door for the nodes' links on %s:%d", node_address, settings.link_port)
    hub_api = f"http://{gateway_ip(settings)}:{settings.hub_port}"
    return application(settings, hub_door(settings, passer, hub_api)), listening_socket(
        node_address, settings.link_port
    )


async def serve(settings: Settings) -> None:
    budget = Budget()
    recorder = Recorder(settings, budget)
    await asyncio.to_thread(recorder.load_today)
    upstreams = Upstreams(settings)
    guard = Guard(settings, upstreams, recorder, budget)
    await guard.open()
    passer = Passer(guard.link_secret)
    await passer.open()
    upstreams.watch()
    stopping = stop_on_signals()
    writer = asyncio.create_task(recorder.run(stopping.is_set))
    sites = [(guard.app(), listening_socket("127.0.0.1", settings.guard_port))]
    if door := hub_door_site(settings, passer):
        sites.append(door)
    log.info("guard on 127.0.0.1:%d", settings.guard_port)
    await serve_sites(sites, stopping)
    await writer
    await passer.close()
    await guard.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s %(asctime)s tre-guard] %(message)s")
    settings = get_settings()
    take_guard_group(settings)
    die_with_parent()  # after the group change, which clears it; the next hub starts a fresh guard
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()

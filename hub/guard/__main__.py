"""`python -m hub.guard`: the guard, a JupyterHub managed service (restarted by the hub if it dies, and
dying with the hub).

It takes the guard's group before it opens any connection: the host firewall lets only that group
reach the workspace network (hub.host.network).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

from aiohttp import web

from hub.guard.app import Guard
from hub.guard.budget import Budget
from hub.guard.recorder import Recorder
from hub.guard.upstream import Upstreams
from hub.host.network import guard_gid
from hub.kernel.lifecycle import die_with_parent
from hub.kernel.settings import Settings, get_settings

log = logging.getLogger("tre.guard")


def take_guard_group(settings: Settings) -> None:
    gid = guard_gid(settings)
    if gid is None:
        raise SystemExit(f"the group {settings.guard_group} does not exist: run `tre network setup`")
    if os.getegid() != gid:
        os.setgroups([])
        os.setgid(gid)


async def serve(settings: Settings) -> None:
    budget = Budget()
    recorder = Recorder(settings, budget)
    await asyncio.to_thread(recorder.load_today)
    upstreams = Upstreams(settings)
    guard = Guard(settings, upstreams, recorder, budget)
    await guard.open()
    loop = asyncio.get_running_loop()
    upstreams.watch()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    writer = asyncio.create_task(recorder.run(stopping.is_set))
    runner = web.AppRunner(guard.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", settings.guard_port, reuse_address=True)
    await site.start()
    log.info("guard on 127.0.0.1:%d", settings.guard_port)
    await stopping.wait()
    await runner.cleanup()
    await writer
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

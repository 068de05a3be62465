"""How a web service runs its request handlers."""

from __future__ import annotations

import gc
import multiprocessing
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Any

import anyio.to_thread
import uvicorn
from fastapi import FastAPI
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import configure_mappers
from starlette.routing import NoMatchFound
from uvicorn.config import STARTUP_FAILURE

from hub.kernel.db import engine_for
from hub.kernel.settings import Settings


def limited_threads(threads: int) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A lifespan that runs at most `threads` synchronous handlers at once in this process.

    FastAPI runs plain `def` handlers in anyio's thread pool, 40 threads by default. Under load those
    threads fight over the GIL and every page waits behind all of them: with 50 clients the portal
    served 190 pages/s through 40 threads and over 300 through a few (tests/benchmarks/portal.py).
    More than one lets a page that waits on the hub's API not hold up the others.
    """
    if threads < 1:
        raise ValueError("a web service needs at least one handler thread")

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        yield

    return lifespan


def prepare_to_serve(app: FastAPI, templates: Jinja2Templates, settings: Settings) -> None:
    """Do before the first request what a new process would otherwise do on its first pages: open
    the registry (loading its database driver, 8 ms), set up the ORM's mappers (one pass over every
    model, 0.1 s), compile every page's template (0.1 s for the portal's) and set up every route.
    Otherwise the first visitors of a new process wait for it, and a registry that cannot be opened,
    a broken template or a broken relationship fails a visitor instead of the start. None of it
    caches any page or query result. For the served process only: not in create_app, which every
    test pays.

    Last, everything built so far (modules, models, templates: 230,000 objects in a portal worker)
    lives as long as the process, so it is frozen out of the garbage collector's sight. Each full
    collection walked all of it, 105 to 157 ms with every page waiting, four times in 15 s of load;
    frozen, a full collection takes 4 to 11 ms (tests/benchmarks/portal.py, gc callbacks)."""
    engine_for(settings)
    with engine_for(settings, readonly=True).connect():  # pages read through this one
        pass
    configure_mappers()
    env = templates.env
    env.auto_reload = False  # a served process's templates never change under it: no stat per page
    for name in env.list_templates(extensions=["html"]):
        env.get_template(name)
    # FastAPI sets up an included router's routes (their dependencies and form models: 15 ms for
    # the portal's) when the first request reaches that router. Looking up the URL of a route that
    # no router has walks every route, and so sets each one up now.
    with suppress(NoMatchFound):
        app.url_path_for("no route has this name")
    gc.collect()  # what start-up left as garbage goes now, not frozen with the rest
    gc.freeze()


def serve_in_workers(config: uvicorn.Config) -> None:
    """Serve `config` (an app given as an import string) in `config.workers` processes, each
    listening on a socket of its own, until SIGTERM or SIGINT.

    uvicorn's own workers share one listening socket, and whichever wakes first accepts a whole burst
    of new keep-alive connections: 44 of 50 once, and that worker then served 88 % of the pages while
    the other idled (tests/benchmarks/portal.py). With SO_REUSEPORT the kernel spreads connections
    over the workers' sockets instead. The sockets are bound here and outlive their workers: a worker
    that dies is replaced on its socket, and the connections waiting there are its successor's.
    """
    if _port_in_use(config.host, config.port):
        # Sockets with SO_REUSEPORT would share a port another of our processes holds, silently.
        raise SystemExit(f"error: {config.host}:{config.port} is in use: stop the process that holds it")
    sockets = [_shared_port_socket(config.host, config.port, config.backlog) for _ in range(config.workers)]
    spawn = multiprocessing.get_context("spawn")  # a clean interpreter per worker, as uvicorn's

    def start(sock: socket.socket) -> multiprocessing.process.BaseProcess:
        worker = spawn.Process(target=_serve_one, args=(config, sock))
        worker.start()
        return worker

    stop: list[int] = []  # the signal that asked us to stop (a plain list: a handler must take no lock)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stop.append(signum))
    workers = [start(sock) for sock in sockets]
    failed = False
    while not failed:
        time.sleep(0.5)
        if stop:
            break
        for i, worker in enumerate(workers):
            if worker.is_alive():
                continue
            if worker.exitcode == STARTUP_FAILURE:  # the app cannot start: every restart would fail too
                failed = True
                break
            workers[i] = start(sockets[i])
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.join()
    if failed:
        raise SystemExit("error: a worker could not start the app: see its error above")


def _serve_one(config: uvicorn.Config, sock: socket.socket) -> None:
    config.configure_logging()
    uvicorn.Server(config).run(sockets=[sock])


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _port_in_use(host: str, port: int) -> bool:
    """Whether a socket listens on the port (connections left in TIME_WAIT by a restart do not count)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _shared_port_socket(host: str, port: int, backlog: int) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # only processes of our uid may join
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock

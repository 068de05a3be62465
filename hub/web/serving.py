"""How a web service runs its request handlers."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, cast

import anyio.to_thread
from fastapi.templating import Jinja2Templates


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


def compile_templates(templates: Jinja2Templates) -> None:
    """Compile every page's template before the first request (0.1 s for the portal's): otherwise the
    first visitors of a new process wait for it, and a broken template fails a visitor instead of the
    start. For the served process only: not in create_app, which every test pays."""
    env = templates.env
    for name in env.list_templates(extensions=["html"]):
        env.get_template(name)


def port_share(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) in the port's SO_REUSEPORT group, not yet listening. Once
    it listens (asyncio's server does that when it starts serving), the kernel gives it its share of
    new connections; until then it takes none. Only a process of the same user can join the group."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


class OwnListener:
    """Stands in for the listening socket uvicorn's supervisor hands its workers, and becomes, in each
    worker, a socket of that worker's own (`port_share`), which listens once the worker's app is
    loaded and started.

    uvicorn's workers otherwise share the one socket their parent bound, and whichever wakes first
    accepts every waiting connection (asyncio accepts up to the backlog at once): 50 clients arriving
    together were served 110:56 or 166:0 by two portal workers (tests/benchmarks/portal.py), so half
    the machine sat idle while the other half queued. Workers are spawned, so the supervisor's
    arguments are pickled: this one is unpickled as a new socket.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def __reduce__(self) -> tuple[Callable[..., socket.socket], tuple[str, int]]:
        return port_share, (self.host, self.port)


def serve_workers(factory: str, workers: int, host: str, port: int, **options: Any) -> None:
    """Serve the app `factory` ("module:function") in `workers` processes, each listening for itself."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(factory, factory=True, workers=workers, host=host, port=port, **options)
    # Held, never listening: a port in use fails here, at start, rather than in every worker.
    with port_share(host, port):
        Multiprocess(config, sockets=[cast(socket.socket, OwnListener(host, port))]).run()

"""How a web service runs its request handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import configure_mappers


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


def prepare_to_serve(templates: Jinja2Templates) -> None:
    """Do before the first request what a new process would otherwise do on its first pages: set up
    the ORM's mappers (one pass over every model, 0.1 s) and compile every page's template (0.1 s
    for the portal's). Otherwise the first visitors of a new process wait for it, and a broken
    template or relationship fails a visitor instead of the start. Neither caches any page or query
    result. For the served process only: not in create_app, which every test pays."""
    configure_mappers()
    env = templates.env
    env.auto_reload = False  # a served process's templates never change under it: no stat per page
    for name in env.list_templates(extensions=["html"]):
        env.get_template(name)

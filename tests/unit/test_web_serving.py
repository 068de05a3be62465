"""hub.web.serving: how many page handlers a web service's process runs at once, and how its worker
processes share a port."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hub.kernel.settings import Settings
from hub.portal.app import create_app
from hub.web.serving import limited_threads
from tests.fixtures_hub import free_port, wait_until

REPO = Path(__file__).resolve().parents[2]


def busiest(app: FastAPI, requests: int = 8) -> int:
    """The most handlers of `app` that ran at the same time while `requests` arrived together."""
    running, most, lock = 0, 0, threading.Lock()

    @app.get("/slow")
    def slow() -> str:  # a plain def: FastAPI runs it in anyio's thread pool
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.1)  # long enough for every request sent together to arrive meanwhile
        with lock:
            running -= 1
        return "ok"

    with TestClient(app) as client, ThreadPoolExecutor(requests) as pool:
        assert all(r.status_code == 200 for r in pool.map(lambda _: client.get("/slow"), range(requests)))
    return most


def test_a_service_runs_no_more_handlers_at_once_than_it_is_given():
    assert busiest(FastAPI(lifespan=limited_threads(1))) == 1
    assert busiest(FastAPI(lifespan=limited_threads(3))) == 3


def test_without_the_limit_many_handlers_run_at_once():
    """The control: anyio's default pool lets every request in, which is what the limit is for."""
    assert busiest(FastAPI()) == 8


def test_the_portal_takes_its_limit_from_the_settings(tmp_path):
    app = create_app(Settings(root=tmp_path / "tre", portal_threads=2), sso=False)
    assert busiest(app) == 2


def test_a_service_needs_a_thread():
    with pytest.raises(ValueError, match="at least one"):
        limited_threads(0)


# -- serve_in_workers: one listening socket per worker -------------------------------------------


async def pid_app(scope: dict, receive: object, send: Callable[[dict], Awaitable[None]]) -> None:
    """Answers every request with the serving worker's pid."""
    body = str(os.getpid()).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


def start_workers(port: int, workers: int = 2) -> subprocess.Popen:
    config = (
        f"uvicorn.Config('tests.unit.test_web_serving:pid_app', workers={workers}, host='127.0.0.1', "
        f"port={port}, lifespan='off', log_level='warning')"
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import uvicorn; from hub.web.serving import serve_in_workers; serve_in_workers({config})",
        ],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )


def listeners(port: int, supervisor: int = 0) -> list[set[int]]:
    """Each socket listening on `port`: the pids that hold it, but for the supervisor, which holds
    every socket so that a worker's replacement gets the same one."""
    out = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return [{int(p) for p in re.findall(r"pid=(\d+)", line)} - {supervisor} for line in out.splitlines()]


def one_worker_each(port: int, supervisor: int) -> bool:
    held = listeners(port, supervisor)
    return len(held) == 2 and all(len(h) == 1 for h in held)


def burst(port: int, connections: int = 50) -> Counter:
    """`connections` keep-alive connections opened together, two requests each: pages per worker."""

    async def one(opened: asyncio.Event) -> list[int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await opened.wait()
        pids = []
        for _ in range(2):
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
            pids.append(int(await reader.readexactly(length)))
        writer.close()
        return pids

    async def all_of_them() -> Counter:
        opened = asyncio.Event()
        tasks = [asyncio.create_task(one(opened)) for _ in range(connections)]
        await asyncio.sleep(0.2)
        opened.set()
        return Counter(pid for pids in await asyncio.gather(*tasks) for pid in pids)

    return asyncio.run(all_of_them())


def stderr_once_ended(process: subprocess.Popen, seconds: float = 30) -> str:
    """What `process` wrote to stderr by the time it ended (killed, test failing, if it does not)."""
    try:
        return process.communicate(timeout=seconds)[1]
    except subprocess.TimeoutExpired:
        process.kill()  # a supervisor left running would hold the port and its workers
        process.communicate()
        raise AssertionError(f"still running after {seconds} s") from None


@pytest.fixture
def two_workers():
    port = free_port()
    server = start_workers(port)
    try:
        wait_until(lambda: one_worker_each(port, server.pid), 30, "2 workers")
        yield port, server
    finally:
        server.terminate()
        server.wait(timeout=15)


def test_each_worker_listens_on_a_socket_of_its_own_and_a_burst_reaches_both(two_workers):
    """With one shared socket (uvicorn's own workers) `ss` shows one listener held by every worker,
    and a burst of new connections goes to whichever worker wakes first (44 of 50 once)."""
    port, server = two_workers
    held = listeners(port, server.pid)
    worker_pids = {pid for holders in held for pid in holders}
    assert len(held) == 2 and len(worker_pids) == 2, held
    pages = burst(port)
    assert set(pages) == worker_pids, pages
    assert min(pages.values()) >= 20, f"50 connections, 100 pages, spread by the kernel: {pages}"


def test_a_worker_that_dies_is_replaced_on_its_socket(two_workers):
    port, server = two_workers
    (victim,) = listeners(port, server.pid)[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: one_worker_each(port, server.pid) and victim not in set.union(*listeners(port, server.pid)),
        30,
        "a replacement worker",
    )
    assert sum(burst(port, 20).values()) == 40  # every page answered, on both sockets


def test_workers_stop_with_their_supervisor_and_free_the_port(two_workers):
    port, server = two_workers
    workers = set.union(*listeners(port, server.pid))
    server.terminate()
    assert server.wait(timeout=15) == 0
    wait_until(lambda: not listeners(port), 10, "the port freed")
    assert not any(Path(f"/proc/{p}").exists() for p in workers)


def test_a_port_already_in_use_is_refused_not_shared(two_workers):
    """Sockets with SO_REUSEPORT join any group of the same user on that port: a second portal
    would silently take half the first one's visitors."""
    port, first = two_workers
    second = start_workers(port)
    err = stderr_once_ended(second)
    assert second.returncode != 0
    assert f"127.0.0.1:{port} is in use" in err
    assert one_worker_each(port, first.pid)


def test_a_worker_that_cannot_start_the_app_stops_the_supervisor():
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", "import uvicorn; from hub.web.serving import serve_in_workers; "
         f"serve_in_workers(uvicorn.Config('tests.unit.no_such_module:app', workers=2, port={port}))"],
        cwd=REPO, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    err = stderr_once_ended(server)
    assert server.returncode != 0
    assert "could not start the app" in err

"""A web service's workers on a real port (hub.web.serving.serve_workers, as the portal runs them):
each worker listens on a socket of its own, and only once its app has started, so the kernel spreads
new connections over the workers that can answer them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.fixtures_hub import free_port, listeners

pytestmark = pytest.mark.slow

SLOW_START = 4.0  # seconds the first worker to load spends starting, in the slow-start test


def pid_app():
    """The app each worker builds: answers with its process id. With TEST_SLOW_MARKER set, the first
    worker to get here takes SLOW_START seconds to load, as a worker still importing would."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    marker = os.environ.get("TEST_SLOW_MARKER")
    if marker:
        try:
            Path(marker).touch(exist_ok=False)
            time.sleep(SLOW_START)
        except FileExistsError:
            pass
    return Starlette(routes=[Route("/", lambda _request: PlainTextResponse(str(os.getpid())))])


def serve(port: int, workers: int, env: dict[str, str]) -> subprocess.Popen:
    code = (
        "import sys; from hub.web.serving import serve_workers; "
        f"serve_workers('tests.integration.test_serving:pid_app', {workers}, '127.0.0.1', {port}, "
        "log_level='warning')"
    )
    return subprocess.Popen([sys.executable, "-c", code], env={**os.environ, **env})


def answer(port: int) -> tuple[str, float]:
    """One request on a new connection: the pid that answered and how long it took."""
    t0 = time.perf_counter()
    with httpx.Client(timeout=30) as client:
        pid = client.get(f"http://127.0.0.1:{port}/").text
    return pid, time.perf_counter() - t0


def wait_for(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.05)


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait(timeout=20)


def test_each_worker_listens_for_itself_and_gets_a_share_of_the_connections():
    port = free_port()
    server = serve(port, 2, {})
    try:
        wait_for(lambda: listeners(port) == 2)  # one shared socket would show one listener
        with ThreadPoolExecutor(50) as pool:
            pids = Counter(pid for pid, _ in pool.map(lambda _: answer(port), range(200)))
        assert len(pids) == 2, pids
        # Spread by a hash of each connection: about 100 each; 160 or more happens 1 in 10^17.
        assert max(pids.values()) < 160, pids
    finally:
        stop(server)
    assert listeners(port) == 0


def test_a_worker_still_starting_takes_no_connections(tmp_path):
    """Connections go only to workers whose app is up: none wait in the backlog of a worker that is
    still loading (as they would if each worker listened before its app was loaded)."""
    port = free_port()
    server = serve(port, 2, {"TEST_SLOW_MARKER": str(tmp_path / "slow")})
    try:
        wait_for(lambda: listeners(port) == 1)
        started = time.monotonic()
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda _: answer(port), range(40)))
        assert time.monotonic() - started < SLOW_START / 2, "the slow worker was still starting"
        assert len({pid for pid, _ in answers}) == 1
        assert max(seconds for _, seconds in answers) < SLOW_START / 2, answers
        wait_for(lambda: listeners(port) == 2)
    finally:
        stop(server)


def test_a_port_already_taken_fails_the_start_at_once():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = serve(port, 2, {})
        try:
            assert server.wait(timeout=30) != 0
        finally:
            if server.poll() is None:
                stop(server)

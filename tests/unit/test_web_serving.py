"""hub.web.serving: how many page handlers a web service's process runs at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hub.kernel.settings import Settings
from hub.portal.app import create_app
from hub.web.serving import limited_threads


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

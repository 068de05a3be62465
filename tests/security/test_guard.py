"""The guard on the browser channel, attacked as a researcher would, through the real proxy and guard.

Found on main before the guard: the whole project extract reached a laptop through the contents
API in under a second, and nothing was recorded. Here a researcher (gwen) in her own Chromium
tries the download routes, reads data files and large files, and runs code; another (bea) runs
past her daily byte budget. A kernel channel is also driven from Python in both websocket
protocols. Then: no way around the guard (route, firewall), and no workspace without it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import time
import uuid
import zipfile
from dataclasses import dataclass
from io import BytesIO

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.fixtures_browser import ARTIFACTS, sign_in
from tests.fixtures_hub import Hub, docker_inspect, own_workspace, process_pids, tcp_from_host
from tests.fixtures_kernel import V1, execute, kernel_channel

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.e2e]
KERNEL_IDLE = """() => {
  const bar = document.querySelector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-NotebookPanel-toolbar");
  const busy = bar && bar.querySelector(".jp-Notebook-ExecutionIndicator");
  return !!bar && /Python 3/.test(bar.innerText) && !!busy && busy.dataset.status === "idle";
}"""
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def wait_for(check, seconds: float = 15, what: str = "it"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"no {what} after {seconds} s")


def guard_events(hub: Hub, action: str, user: str, project: str) -> list[dict]:
    return [d for actor, d in hub.audit_events(action, project) if actor == user]


def code_runs(hub: Hub, user: str) -> list[str]:
    from hub.kernel import codelog
    from hub.kernel.db import session_scope

    with session_scope(hub.settings, readonly=True) as s:
        return [r.code for r in codelog.search(s, username=user, limit=1000)]


def put_home(hub: Hub, user: str, project: str, name: str, data: bytes | str) -> None:
    path = hub.settings.home_dir(project, user) / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.chown(path, 1000, 1000)


def notebook(*cells: str) -> str:
    return json.dumps(
        {
            "cells": [
                {"cell_type": "code", "source": c, "metadata": {}, "outputs": [], "execution_count": None}
                for c in cells
            ],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


FETCH = """async (url) => {
  // As JupyterLab does: its requests carry the _xsrf cookie's value in a header.
  const xsrf = decodeURIComponent((document.cookie.match(/(?:^|; )_xsrf=([^;]+)/) || [])[1] || "");
  const r = await fetch(url, {credentials: "include", headers: {"X-XSRFToken": xsrf}});
  return {status: r.status, guard: r.headers.get("x-tre-guard"), text: await r.text()};
}"""


@dataclass
class Answer:
    status: int
    guard: str | None
    text: str

    def json(self):
        return json.loads(self.text)


class Lab:
    """A researcher's JupyterLab in her own Chromium, signed in through the hub."""

    def __init__(self, browser, hub: Hub, user: str, project: str) -> None:
        self.hub, self.user, self.project = hub, user, project
        self.base = hub.user_url(user, project)
        self.context, self.page = sign_in(browser, hub, user)
        self.page.goto(self.base + "lab")
        self.page.locator(".jp-LabShell").wait_for(timeout=120_000)

    def get(self, path: str) -> Answer:
        """GET from the page itself (her origin, her cookies), as JupyterLab's own requests go."""
        got = self.page.evaluate(FETCH, self.base + path)
        return Answer(got["status"], got["guard"], got["text"])

    def run_notebook(self, name: str, expect: str) -> None:
        page = self.page
        page.goto(f"{self.base}lab/tree/{name}?reset")
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
        page.wait_for_function(KERNEL_IDLE, timeout=120_000)
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
        try:
            page.get_by_text(expect).first.wait_for(timeout=60_000)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / f"guard-{self.user}-{name}.png"))
            raise

    def close(self) -> None:
        self.context.close()


@pytest.fixture(scope="module")
def gwen(tre_hub) -> tuple[str, str]:
    user, project, _ = own_workspace(tre_hub, "gwen", read_bytes=1_000_000)
    return user, project


@pytest.fixture(scope="module")
def lab(browser, tre_hub, gwen):
    lab = Lab(browser, tre_hub, *gwen)
    yield lab
    lab.close()


REFUSED_ROUTES = {
    "files/notes.txt": "downloading files",
    "view/notes.txt": "downloading files",
    "nbconvert/html/notes.ipynb": "exporting notebooks",
    "api/nbconvert/html/notes.ipynb": "exporting notebooks",
    "api/terminals": "terminals",
    "terminals/websocket/1": "terminals",
    "lab/api/extensions": "managing JupyterLab extensions",
    "api/contents/..%2F..%2Fetc%2Fpasswd": "'..' components",
    "metrics": "does not use",
}


def test_download_routes_are_refused_at_the_guard_and_audited(tre_hub, gwen, lab):
    user, project = gwen
    put_home(tre_hub, user, project, "notes.txt", "a researcher's notes\n")
    assert lab.get("api/contents/notes.txt").status == 200  # control: her session works
    for path, reason in REFUSED_ROUTES.items():
        answer = lab.get(path)
        assert answer.status == 403, (path, answer.status)
        assert answer.guard == "refused", path  # the guard, not the container
        assert reason in answer.text and "ask for a release" in answer.text, path

    def every_reason_audited() -> bool:
        got = {d["reason"] for d in guard_events(tre_hub, "guard.refused", user, project)}
        return all(any(want in reason for reason in got) for want in REFUSED_ROUTES.values())

    wait_for(every_reason_audited, what="an audit event for every refused route")


def parquet_bytes() -> bytes:
    sink = BytesIO()
    pq.write_table(pa.table({"nhs_number": ["9434765919"] * 50, "hba1c": list(range(50))}), sink)
    return sink.getvalue()


def zip_bytes() -> bytes:
    sink = BytesIO()
    with zipfile.ZipFile(sink, "w") as z:
        z.writestr("extract.csv", "id,value\n1,2\n")
    return sink.getvalue()


def test_the_browser_reads_only_notebooks_text_and_figures_within_the_limit(tre_hub, gwen, lab):
    user, project = gwen
    refused = {
        "extract.parquet": (parquet_bytes(), ".parquet files are data"),
        "cohort.duckdb": (b"DUCK" + os.urandom(500), ".duckdb files are data"),
        "bundle.zip": (zip_bytes(), ".zip files are data"),
        "features.feather": (b"ARROW1" + os.urandom(100), ".feather files are data"),
        "cohort.sqlite": (b"SQLite format 3\x00" + os.urandom(100), ".sqlite files are data"),
        "big.txt": ("y" * 1_200_000, "more than"),
        "blob.bin": (os.urandom(2048), "binary files"),
        "disguised.txt": (parquet_bytes(), "binary files"),  # a renamed extract
    }
    allowed = {"result.csv": "sex,n\nF,40\nM,38\n", "figure.png": PNG, "summary.ipynb": notebook("1 + 1")}
    for name, (data, _) in refused.items():
        put_home(tre_hub, user, project, name, data)
    for name, data in allowed.items():
        put_home(tre_hub, user, project, name, data)
    for name in allowed:
        assert lab.get(f"api/contents/{name}").status == 200, name
    listing = lab.get("api/contents").json()
    assert {"extract.parquet", "big.txt"} <= {c["name"] for c in listing["content"]}  # she sees them
    assert lab.get("api/contents/extract.parquet?content=0").status == 200  # and their size, not bytes
    for name, (_, reason) in refused.items():
        answer = lab.get(f"api/contents/{name}")
        assert answer.status == 403 and reason in answer.json()["message"], (name, answer.text[:200])
        assert "9434765919" not in answer.text
    wait_for(
        lambda: (
            {d.get("file") for d in guard_events(tre_hub, "guard.refused", user, project)} >= set(refused)
        ),
        what="an audit event for every refused read",
    )


def test_uploads_are_capped_and_audited(tre_hub, gwen):
    user, project = gwen
    token = tre_hub.user_token(user)
    url = tre_hub.user_url(user, project) + "api/contents/"
    body = {"type": "file", "format": "base64", "content": base64.b64encode(b"lookup table\n").decode()}
    with tre_hub.client(headers={"Authorization": f"token {token}"}, timeout=120) as client:
        assert client.put(url + "uploaded.txt", json=body).status_code == 201
        event = wait_for(
            lambda: [
                d for d in guard_events(tre_hub, "guard.upload", user, project) if d["path"] == "uploaded.txt"
            ],
            what="the upload's audit event",
        )
        assert event[0]["request_bytes"] > 0
        huge = (
            b'{"type": "file", "format": "text", "content": "'
            + b"x" * (tre_hub.settings.max_upload_bytes + 1024 * 1024)
            + b'"}'
        )
        answer = client.put(url + "huge.txt", content=huge, headers={"Content-Type": "application/json"})
        assert answer.status_code == 413 and answer.headers.get("x-tre-guard") == "refused"
    assert not (tre_hub.settings.home_dir(project, user) / "huge.txt").exists()
    wait_for(
        lambda: [
            d for d in guard_events(tre_hub, "guard.refused", user, project) if "upload larger" in d["reason"]
        ],
        what="the refused upload's audit event",
    )


# --- the code log ------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["", V1], ids=["json-protocol", "v1-protocol"])
def test_every_cell_is_recorded_outside_the_container_in_both_protocols(tre_hub, gwen, protocol):
    user, project = gwen
    code = f"total = sum(range(10))\nprint('Σ', total, {protocol!r})  # {uuid.uuid4().hex}"
    ws, kernel = kernel_channel(tre_hub, user, project, tre_hub.user_token(user), protocol)
    with ws:
        assert ws.subprotocol == (protocol or None)
        assert execute(ws, code, protocol)["status"] == "ok"
    assert wait_for(lambda: code in code_runs(tre_hub, user), what="the code run in the code log")
    from hub.kernel import codelog
    from hub.kernel.db import session_scope

    with session_scope(tre_hub.settings, readonly=True) as s:
        [row] = codelog.search(s, username=user, contains=code)
        assert (row.project, row.kernel_id, row.kind) == (project, kernel, "execute")
        assert codelog.verify(s).ok


def test_a_cell_run_in_jupyterlab_is_recorded_and_the_session_trips_nothing(tre_hub, gwen, lab):
    user, project = gwen
    refusals_before = len(guard_events(tre_hub, "guard.refused", user, project))
    code = f"print('guarded', 6 * 7)  # {uuid.uuid4().hex[:8]}"
    put_home(tre_hub, user, project, "guarded.ipynb", notebook(code))
    lab.run_notebook("guarded.ipynb", "guarded 42")
    assert wait_for(lambda: code in code_runs(tre_hub, user), what="the JupyterLab cell in the code log")
    time.sleep(1)
    new = guard_events(tre_hub, "guard.refused", user, project)[refusals_before:]
    assert new == [], f"an ordinary JupyterLab session was refused something: {new}"


# --- the budget -------------------------------------------------------------------------------------


def test_output_past_the_daily_budget_is_cut_with_a_notice_and_audited(browser, tre_hub):
    from typer.testing import CliRunner

    from hub.cli import app

    user, project, _ = own_workspace(tre_hub, "bea", daily_bytes=1_000_000)
    lab = Lab(browser, tre_hub, user, project)
    try:
        put_home(tre_hub, user, project, "notes.txt", "small\n")
        put_home(
            tre_hub, user, project, "dump.ipynb", notebook("for i in range(2000):\n    print(i, 'z' * 1000)")
        )
        assert lab.get("api/contents/notes.txt").status == 200  # control: within the budget
        lab.run_notebook("dump.ipynb", "[TRE] Output withheld")
        put_home(tre_hub, user, project, "later.txt", "more than is left of today's budget\n" * 30_000)
        assert lab.get("api/contents/notes.txt").status == 200  # what the browser already has is free
        answer = lab.get("api/contents/later.txt")
        assert answer.status == 403 and "for today" in answer.json()["message"]
        [cut] = wait_for(
            lambda: guard_events(tre_hub, "guard.budget_cut", user, project), what="the cut's audit"
        )
        assert cut["daily_bytes"] == 1_000_000
        shown = lab.page.locator(".jp-OutputArea-output").all_inner_texts()
        assert sum(len(t) for t in shown) < 1_100_000  # what reached the browser
        env = tre_hub.settings.to_env()
        rows = wait_for(
            lambda: [
                r
                for r in json.loads(CliRunner().invoke(app, ["guard", "usage", "--json"], env=env).stdout)
                if r["user"] == user and r["cut"]
            ],
            seconds=20,
            what="the workspace in `tre guard usage`",
        )
        assert rows[0]["sent_bytes"] <= 1_100_000 and rows[0]["daily_bytes"] == 1_000_000
    finally:
        lab.close()


# --- no way around it ---------------------------------------------------------------------------------


def test_no_route_and_no_host_process_reaches_a_workspace_but_the_guard(tre_hub, gwen):
    from hub.host.network import status

    user, project = gwen
    settings = tre_hub.settings
    token = (settings.state_dir / "proxy-api-token").read_text()
    routes = httpx.get(
        f"http://127.0.0.1:{settings.proxy_api_port}/api/routes", headers={"Authorization": f"token {token}"}
    ).json()
    workspace_routes = {spec: r["target"] for spec, r in routes.items() if "/user/" in spec}
    assert workspace_routes and set(workspace_routes.values()) == {f"http://127.0.0.1:{settings.guard_port}"}
    container = tre_hub.container(user, project)
    ip = docker_inspect(container)["NetworkSettings"]["Networks"][settings.network]["IPAddress"]
    as_root = tcp_from_host(settings, ip, 8888, as_guard=False)  # the proxy, the hub, any host process
    assert as_root.returncode != 0 and "Connection refused" in as_root.stderr, as_root
    as_guard = tcp_from_host(settings, ip, 8888, as_guard=True)
    assert as_guard.returncode == 0, as_guard  # control: the firewall is what stops the rest
    assert status(settings).ok


def guard_pid(hub: Hub) -> int | None:
    return next(iter(process_pids(hub, "hub.guard")), None)


def test_no_workspace_starts_while_the_guard_is_down_and_the_hub_restarts_it(tre_hub):
    user, project, _ = own_workspace(tre_hub, "dora", start=False)
    pid = guard_pid(tre_hub)
    assert pid, "the hub should be running the guard"
    os.kill(pid, signal.SIGKILL)
    answer = tre_hub.request_start(user, project)
    assert answer.status_code == 503 and "guard is not running" in answer.text, answer.text
    assert tre_hub.server(user, project) is None
    wait_for(
        lambda: (guard_pid(tre_hub) or 0) not in (0, pid), seconds=90, what="the hub restarting the guard"
    )
    health = f"http://127.0.0.1:{tre_hub.settings.guard_port}/_guard/health"

    def answering() -> bool:
        try:
            return httpx.get(health, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(answering, seconds=30, what="the guard answering again")
    tre_hub.start(user, project)

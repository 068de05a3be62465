"""Attacks on jobs, on a real hub: the jobs API answers only a workspace's own server token and only
for that workspace's project (a job could otherwise carry one project's data into another's home as
parameters); paths out of the home and links are refused; a job has no network and cannot write the
data; withdrawn access stops a running job as it stops a workspace."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.fixtures_hub import Hub, docker_exec, own_workspace
from tests.fixtures_jobs import put_notebook, wait_status
from tests.fixtures_kernel import notebook_bytes

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def server_token(hub: Hub, user: str, project: str) -> str:
    out = docker_exec(hub.container(user, project), "printenv", "JUPYTERHUB_API_TOKEN")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def second_project(hub: Hub, user: str, project: str) -> None:
    """Give `user` another project of her own, with a release, and start its workspace."""
    from hub import registry as reg
    from hub.kernel.db import session_scope
    from tests.fixtures_registry import ADMIN, CUSTODIAN, LEAD, publish_release

    with session_scope(hub.settings) as s:
        reg.create_project(s, ADMIN, project, "Other", LEAD, datetime.now(UTC) + timedelta(days=30))
        reg.add_member(s, LEAD, project, user)
        grant = reg.request_grant(s, LEAD, project, "diabetes", {"patients": ["*"]})
        reg.decide_grant(s, CUSTODIAN, grant.id, approve=True)
    publish_release(hub.settings, project)
    hub.start(user, project)


@pytest.fixture(scope="module")
def two_workspaces(tre_hub):
    user, project, _ = own_workspace(tre_hub, "jobsec")
    second_project(tre_hub, user, "jobsec-other")
    put_notebook(tre_hub, user, project, "nb.ipynb", notebook_bytes("1"))
    return tre_hub, user, project, "jobsec-other"


def test_only_a_workspace_token_submits_and_only_for_its_own_project(two_workspaces):
    hub, user, project, other = two_workspaces
    body = {"notebook": "nb.ipynb", "parameters": {"x": 1}}
    # No token, the user's full API token, the operator's admin token: none is a workspace.
    r = hub.api("POST", "/tre/jobs", token="not-a-token", json=body)
    assert r.status_code == 403, r.text
    for token in (hub.user_token(user), hub.token):  # naming the project does not help
        r = hub.api("POST", "/tre/jobs", token=token, json={**body, "project": project})
        assert r.status_code == 403 and "inside a workspace" in r.json()["message"], r.text
    mine = server_token(hub, user, project)
    r = hub.api("POST", "/tre/jobs", token=mine, json=body)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["project"] == project and job["username"] == user
    # The other workspace's token (same person) sees no job of this project, and cannot cancel it.
    theirs = server_token(hub, user, other)
    assert hub.api("GET", f"/tre/jobs/{job['id']}", token=theirs).status_code == 404
    assert hub.api("POST", f"/tre/jobs/{job['id']}/cancel", token=theirs, json={}).status_code == 404
    assert hub.api("GET", "/tre/jobs", token=theirs).json() == {"jobs": []}
    # A project named in the body is ignored: the token's project is the job's.
    r = hub.api("POST", "/tre/jobs", token=theirs, json={**body, "project": project})
    assert r.status_code == 400 and "does not exist" in r.json()["message"]  # nb.ipynb is not in that home
    assert hub.api("GET", f"/tre/jobs/{job['id']}", token=mine).json()["id"] == job["id"]


@pytest.mark.parametrize(
    ("notebook", "message"),
    [("../../other/nb.ipynb", "'..'"), ("link.ipynb", "symbolic link"), ("/etc/x.ipynb", "outside")],
)
def test_paths_out_of_the_home_and_links_are_refused(two_workspaces, notebook, message):
    hub, user, project, _ = two_workspaces
    home = hub.settings.home_dir(project, user)
    if not (home / "link.ipynb").is_symlink():
        os.symlink(hub.settings.state_dir / "tre.sqlite", home / "link.ipynb")
    r = hub.api("POST", "/tre/jobs", token=server_token(hub, user, project), json={"notebook": notebook})
    assert r.status_code == 400 and message in r.json()["message"], r.text


PROBE = """
import socket, pathlib
results = []
try:
    socket.create_connection(({gateway!r}, {port}), timeout=3)
    results.append("hub reachable")
except OSError as exc:
    results.append(f"network blocked: {{exc.__class__.__name__}}")
try:
    pathlib.Path('/data/planted.txt').write_text('x')
    results.append("data written")
except OSError:
    results.append("data read-only")
pathlib.Path('probe.txt').write_text(' | '.join(results))
"""


def test_a_job_has_no_network_and_cannot_write_the_data(two_workspaces):
    hub, user, project, _ = two_workspaces
    probe = PROBE.format(gateway=hub.gateway, port=hub.settings.hub_port)
    put_notebook(hub, user, project, "probe.ipynb", notebook_bytes(probe))
    r = hub.api("POST", "/tre/jobs", token=server_token(hub, user, project), json={"notebook": "probe.ipynb"})
    job = wait_status(hub, r.json()["id"], {"done", "failed", "stopped"})
    assert job.status == "done", job.reason
    result = (hub.settings.home_dir(project, user) / "probe.txt").read_text()
    assert result.startswith("network blocked") and result.endswith("data read-only"), result


def test_removing_the_member_stops_her_running_job(two_workspaces):
    from hub.enforcement import remove_member
    from tests.fixtures_registry import LEAD

    hub, user, _, other = two_workspaces
    put_notebook(hub, user, other, "sleep.ipynb", notebook_bytes("import time\ntime.sleep(300)"))
    r = hub.api("POST", "/tre/jobs", token=server_token(hub, user, other), json={"notebook": "sleep.ipynb"})
    job_id = r.json()["id"]
    wait_status(hub, job_id, {"running"})
    removed = time.monotonic()
    remove_member(hub.settings, LEAD, other, user)
    job = wait_status(hub, job_id, {"stopped", "done", "failed"}, timeout=60)
    assert job.status == "stopped" and "access withdrawn" in job.reason, job.reason
    assert time.monotonic() - removed < 60

"""Jobs on a real hub with real containers: a researcher submits a notebook from inside her workspace
(tre_notebook.jobs and the tre-job command, through the hub API with the workspace's own token); the
job runs in a sealed container of its own, outlives the workspace, and writes its outputs, executed
notebook and log into her project home. Limits queue jobs, time limits and cancellation stop them,
and a runner that dies adopts the running jobs when it comes back."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator

import pytest

from hub.jobs.runner import container_name
from tests.fixtures_crate import five_safes_problems, validate_folder
from tests.fixtures_hub import Hub, docker_exec, docker_out, hub_of_its_own, own_workspace, process_pids
from tests.fixtures_jobs import job_container, job_row, put_notebook, submit_inside, wait_status
from tests.fixtures_kernel import notebook_bytes

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def hub(tmp_path_factory, hub_image) -> Iterator[Hub]:
    yield from hub_of_its_own(tmp_path_factory, hub_image, "jobs")


SLEEPER = notebook_bytes("import time\ntime.sleep(300)")


def test_a_job_outlives_its_workspace_and_writes_into_the_home(hub, tmp_path):
    user, project, _ = own_workspace(hub, "jobrun")
    put_notebook(
        hub,
        user,
        project,
        "work/make.ipynb",
        notebook_bytes(
            "import os, pathlib, time\ntime.sleep(4)",
            "pathlib.Path('out').mkdir(exist_ok=True)\n"
            "pathlib.Path('out/result.txt').write_text(f'{year} {sorted(os.listdir(\"/data\"))}')",
            "print('made it')",
            parameters="year = 2000",
        ),
    )
    job_id = submit_inside(hub, user, project, "'work/make.ipynb', {'year': 2021}")
    job = wait_status(hub, job_id, {"running"})
    name = container_name(hub.settings, job_id)
    inspected = job_container(hub, job_id)
    host = inspected["HostConfig"]
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"]
    assert "no-new-privileges:true" in host["SecurityOpt"] and host["PidsLimit"] == 256
    mounts = {m["Destination"]: m for m in inspected["Mounts"]}
    assert not mounts["/data"]["RW"] and mounts["/home/jovyan"]["RW"]
    assert not mounts["/opt/tre/job/notebook.ipynb"]["RW"]

    hub.stop(user, project)  # the researcher closes her workspace: the job goes on
    assert hub.server(user, project) is None
    job = wait_status(hub, job_id, {"done", "failed", "stopped"})
    home = hub.settings.home_dir(project, user)
    assert job.status == "done", (job.reason, (home / f"jobs/{job_id}/log.txt").read_text())
    assert (home / "work/out/result.txt").read_text() == "2021 ['data']"
    executed = json.loads((home / f"jobs/{job_id}/make.ipynb").read_text())
    assert "made it" in json.dumps(executed["cells"][-1]["outputs"])
    assert "make.ipynb" in (home / f"jobs/{job_id}/log.txt").read_text()
    assert (home / f"jobs/{job_id}/make.ipynb").stat().st_uid == 1000  # written by the job, not the host
    assert job.release == 1 and job.exit_code == 0
    actions = [a for a, _ in hub.audit_events("job.start", project)] + [
        a for a, _ in hub.audit_events("job.finish", project)
    ]
    assert actions == ["tre-jobs", "tre-jobs"]
    assert not docker_exec_exists(name), "the job's container is removed when it ends"

    # Back in a workspace, the researcher sees it with the tre-job command.
    hub.start(user, project)
    listed = docker_exec(hub.container(user, project), "tre-job", "list")
    assert f"<job {job_id} work/make.ipynb: done>" in listed.stdout, listed
    # Its Five Safes RO-Crate, written into the job's folder from inside the workspace.
    wrote = docker_exec(hub.container(user, project), "tre-job", "crate", str(job_id))
    assert wrote.stdout.strip() == f"/home/jovyan/jobs/{job_id}/ro-crate-metadata.json", wrote
    crate = json.loads((home / f"jobs/{job_id}/ro-crate-metadata.json").read_text())
    assert five_safes_problems(crate) == []
    graph = {e["@id"]: e for e in crate["@graph"]}
    assert graph["#parameter-year"]["value"] == "2021" and graph["make.ipynb"]["@type"] == "File"
    report = validate_folder(home / f"jobs/{job_id}", tmp_path)
    assert report["passed"], report.get("issues")


def docker_exec_exists(name: str) -> bool:
    import subprocess

    return subprocess.run(["docker", "inspect", name], capture_output=True, check=False).returncode == 0


def test_limits_queue_jobs_and_time_limits_and_cancellation_stop_them(hub):
    user, project, _ = own_workspace(hub, "jobqueue", jobs=1, job_seconds=15)
    put_notebook(hub, user, project, "sleep.ipynb", SLEEPER)
    container = hub.container(user, project)
    ids = []
    for _ in range(2):
        out = docker_exec(container, "tre-job", "run", "sleep.ipynb")
        assert out.returncode == 0, out.stderr
        ids.append(int(out.stdout.split()[1]))
    first, second = ids
    wait_status(hub, first, {"running"})
    time.sleep(3)
    assert job_row(hub, second).status == "queued", "the project may run one job at a time"

    cancelled_at = time.monotonic()
    assert docker_exec(container, "tre-job", "cancel", str(first)).returncode == 0
    job = wait_status(hub, first, {"stopped"}, timeout=30)
    assert job.reason == f"cancelled by {user}" and time.monotonic() - cancelled_at < 15
    wait_status(hub, second, {"running"}, timeout=30)  # the queue moves on
    job = wait_status(hub, second, {"stopped"}, timeout=60)
    assert "longer than the project's limit of 15 s" in job.reason
    took = (job.finished_at - job.started_at).total_seconds()
    assert 15 <= took < 30, took
    finishes = {d["job"]: d for _, d in hub.audit_events("job.finish", project)}
    assert finishes[first]["status"] == finishes[second]["status"] == "stopped"
    assert [d["job"] for _, d in hub.audit_events("job.cancel", project)] == [first]


def test_a_failing_notebook_fails_with_its_log_and_a_runner_restart_adopts_running_jobs(hub):
    user, project, _ = own_workspace(hub, "jobfail")
    put_notebook(hub, user, project, "bad.ipynb", notebook_bytes("raise ValueError('no such column')"))
    put_notebook(hub, user, project, "slow.ipynb", notebook_bytes("import time\ntime.sleep(8)"))
    bad = submit_inside(hub, user, project, "'bad.ipynb'")
    job = wait_status(hub, bad, {"done", "failed", "stopped"})
    log = (hub.settings.home_dir(project, user) / f"jobs/{bad}/log.txt").read_text()
    assert job.status == "failed" and job.exit_code == 1 and "no such column" in log

    slow = submit_inside(hub, user, project, "'slow.ipynb'")
    wait_status(hub, slow, {"running"})
    (runner,) = process_pids(hub, "hub.jobs")
    os.kill(runner, signal.SIGKILL)  # JupyterHub starts its managed service again
    job = wait_status(hub, slow, {"done", "failed", "stopped"}, timeout=120)
    assert job.status == "done", job.reason
    assert process_pids(hub, "hub.jobs") not in ([], [runner])


def test_on_a_swarm_a_job_is_a_job_service_on_the_sealed_network(swarm_hub):
    """TRE_ENGINE=swarm: the same job runs as a one-task job service that joins the sealed network
    (which reaches nothing: tests/security/test_swarm_boundaries.py) and is removed when it ends."""
    from hub.host import swarm

    user, project, _ = own_workspace(swarm_hub, "swarmjob")
    put_notebook(
        swarm_hub, user, project, "make.ipynb",
        notebook_bytes(
            "import pathlib, time\ntime.sleep(3)\n"
            "status = pathlib.Path('/proc/self/status').read_text()\n"
            "pathlib.Path('out.txt').write_text(f'{year} ' + status.split('NoNewPrivs:')[1].split()[0])",
            parameters="year = 2000",
        ),
    )  # fmt: skip
    job_id = submit_inside(swarm_hub, user, project, "'make.ipynb', {'year': 2022}")
    wait_status(swarm_hub, job_id, {"running"})
    name = container_name(swarm_hub.settings, job_id)
    spec = job_container(swarm_hub, job_id)["Spec"]
    assert "ReplicatedJob" in spec["Mode"]
    nets = [n["Target"] for n in spec["TaskTemplate"].get("Networks", [])]
    sealed_id = docker_out("network", "inspect", "-f", "{{.Id}}", swarm.sealed_network(swarm_hub.settings))
    assert nets in ([sealed_id.strip()], [swarm.sealed_network(swarm_hub.settings)])
    container = spec["TaskTemplate"]["ContainerSpec"]
    assert (
        container["ReadOnly"] and container["CapabilityDrop"] == ["ALL"] and container["User"] == "1000:1000"
    )
    assert spec["TaskTemplate"]["Resources"]["Limits"]["Pids"] == 256
    job = wait_status(swarm_hub, job_id, {"done", "failed", "stopped"})
    home = swarm_hub.settings.home_dir(project, user)
    assert job.status == "done", (job.reason, (home / f"jobs/{job_id}/log.txt").read_text())
    assert (home / "out.txt").read_text() == "2022 1"  # the parameter, and no-new-privileges from the daemon
    assert docker_out("service", "ls", "-q", "--filter", f"name={name}").strip() == ""

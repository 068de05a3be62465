"""Provisioning runs started from the portal: progress in the registry, a failure's reason on the
page, and runs whose process died (a worker, or the whole portal) marked failed."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from hub.kernel.lifecycle import process_identity
from hub.provisioning.runs import fail_orphaned_runs, latest_run, start_run
from tests.fixtures_registry import CUSTODIAN


def _finished(settings, slug: str) -> dict:
    for _ in range(300):
        run = latest_run(settings, slug)
        if run and run["status"] != "running":
            return run
        time.sleep(0.05)
    raise AssertionError(f"the run did not finish: {latest_run(settings, slug)}")


def test_a_run_reports_its_steps_and_its_release(make_world):
    world = make_world(grant="approved")
    from hub.kernel.db import session_scope
    from hub.registry.models import Grant

    with session_scope(world.settings) as s:  # no opt-out list here: keep them, so the build can run
        s.get(Grant, world.grant_id).remove_opted_out = False
    start_run(world.settings, world.project, CUSTODIAN)
    run = _finished(world.settings, world.project)
    assert run["status"] == "published" and run["release"] == 1 and run["done"] == run["total"]


def test_a_failed_run_says_why(make_world):
    world = make_world(grant="approved")  # removes opted-out patients, but no opt-out list exists
    start_run(world.settings, world.project, CUSTODIAN)
    run = _finished(world.settings, world.project)
    assert run["status"] == "failed" and "no opt-out list is registered" in run["error"]


def _run_by(settings, project: str, runner: str) -> None:
    from hub.kernel.db import session_scope
    from hub.provisioning.runs import ProvisioningRun

    with session_scope(settings) as s:
        s.add(ProvisioningRun(project=project, started_by=CUSTODIAN, runner=runner))


def _dead_process() -> str:
    """The identity a process had while it lived (it has exited since)."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    identity = process_identity(child.pid)
    child.communicate(b"")
    assert identity and process_identity(child.pid) is None
    return identity


def test_a_run_whose_worker_died_is_failed_when_next_looked_at(make_world):
    world = make_world(grant=None)
    _run_by(world.settings, world.project, _dead_process())
    run = latest_run(world.settings, world.project)
    assert run["status"] == "failed" and "stopped" in run["error"] and run["finished_at"]


def test_a_run_whose_worker_lives_stays_running(make_world):
    """The control: this process is alive, so its run is still running, on every look and at start."""
    world = make_world(grant=None)
    _run_by(world.settings, world.project, process_identity(os.getpid()))
    fail_orphaned_runs(world.settings)
    assert latest_run(world.settings, world.project)["status"] == "running"


def test_a_reused_pid_does_not_keep_a_dead_run_alive(make_world):
    """The same pid with another start time is another process."""
    world = make_world(grant=None)
    pid, _, start = process_identity(os.getpid()).partition(":")
    _run_by(world.settings, world.project, f"{pid}:{int(start) - 1}")
    assert latest_run(world.settings, world.project)["status"] == "failed"


def test_runs_from_before_a_restart_are_marked_failed_at_start(make_world):
    world = make_world(grant=None)
    _run_by(world.settings, world.project, "")  # a run recorded before runs named their process
    fail_orphaned_runs(world.settings)  # what `python -m hub.portal` does before its workers start
    run = latest_run(world.settings, world.project)
    assert run["status"] == "failed" and "stopped" in run["error"]

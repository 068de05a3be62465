"""Provisioning runs started from the portal: progress in the registry, a failure's reason on the
page, and runs orphaned by a restart marked failed."""

from __future__ import annotations

import time

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


def test_runs_orphaned_by_a_restart_are_marked_failed(make_world):
    world = make_world(grant=None)
    from hub.kernel.db import session_scope
    from hub.provisioning.runs import ProvisioningRun

    with session_scope(world.settings) as s:
        s.add(ProvisioningRun(project=world.project, started_by=CUSTODIAN))
    fail_orphaned_runs(world.settings)
    run = latest_run(world.settings, world.project)
    assert run["status"] == "failed" and "restarted" in run["error"]

"""Jobs: the rules (who starts next, parameters, notebook paths) and submitting, listing and cancelling
against a real registry database. Running them in containers: tests/integration/test_jobs.py."""

from __future__ import annotations

import json
import os

import pytest
from sqlalchemy import select

from hub import registry as reg
from hub.jobs.models import Job
from hub.jobs.rules import (
    MAX_WAITING_PER_USER,
    JobNotFound,
    JobRefused,
    Waiting,
    check_notebook_path,
    check_parameters,
    next_to_start,
)
from hub.jobs.service import Jobs, snapshot_path
from hub.kernel.audit import AuditEvent
from hub.kernel.codelog import CodeRun
from hub.kernel.db import session_scope
from tests.fixtures_kernel import notebook_bytes
from tests.fixtures_registry import ADMIN, CHECKER, LEAD, RESEARCHER, publish_release


def test_waiting_jobs_start_oldest_first_within_project_and_host_limits():
    waiting = [Waiting(5, "a"), Waiting(1, "a"), Waiting(2, "b"), Waiting(3, "a"), Waiting(4, "c")]
    # a: 1 running of 2 -> one more; b: at its limit; c: limit 0 (jobs off) -> never.
    chosen = next_to_start(waiting, {"a": 1, "b": 1}, {"a": 2, "b": 1, "c": 0}, host_free=5)
    assert chosen == [1]
    assert next_to_start(waiting, {}, {"a": 3, "b": 1, "c": 1}, host_free=2) == [1, 2]
    assert next_to_start(waiting, {}, {"a": 3}, host_free=0) == []
    assert next_to_start(waiting, {}, {}, host_free=5) == [], "a project with no limit known runs nothing"


def test_parameters_are_small_named_json_settings():
    assert check_parameters({"year": 2021, "regions": ["N", "S"], "ok": True}) == {
        "year": 2021,
        "regions": ["N", "S"],
        "ok": True,
    }
    assert check_parameters(None) == {}
    for bad in ([1, 2], {"1x": 1}, {"a b": 1}, {"x": object()}, {"x": "y" * 20_000}):
        with pytest.raises(JobRefused):
            check_parameters(bad)


def test_only_notebooks_outside_the_jobs_folder_run():
    assert check_notebook_path("analysis/train.ipynb") == "analysis/train.ipynb"
    for bad in ("train.py", "jobs/3/train.ipynb", "notebook"):
        with pytest.raises(JobRefused):
            check_notebook_path(bad)


@pytest.fixture
def jobs_world(make_world):
    world = make_world()
    publish_release(world.settings, world.project)
    home = world.settings.home_dir(world.project, RESEARCHER)
    home.mkdir(parents=True)
    return world, home, Jobs(world.settings)


def _notebook_with_output() -> bytes:
    nb = json.loads(notebook_bytes("print(secret_rows)", parameters="year = 2000"))
    nb["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "patient 123\n"}]
    nb["cells"][1]["execution_count"] = 7
    return json.dumps(nb).encode()


def test_a_submitted_notebook_is_copied_without_outputs_hashed_audited_and_logged_as_code(jobs_world):
    world, home, jobs = jobs_world
    (home / "nb.ipynb").write_bytes(_notebook_with_output())
    job = jobs.submit(RESEARCHER, world.project, "nb.ipynb", {"year": 2021})
    assert job["status"] == "queued" and job["executed"] == f"jobs/{job['id']}/nb.ipynb"
    copy = snapshot_path(world.settings, job["id"])
    runnable = json.loads(copy.read_bytes())
    assert [c["outputs"] for c in runnable["cells"]] == [[], []], "outputs may hold data: not copied"
    assert oct(copy.stat().st_mode & 0o777) == "0o444"
    assert oct(copy.parent.stat().st_mode & 0o777) == "0o700"
    (home / "nb.ipynb").write_bytes(notebook_bytes("changed()"))  # later edits do not change the job
    assert json.loads(copy.read_bytes())["cells"][1]["source"] == "print(secret_rows)"
    with session_scope(world.settings) as s:
        event = s.execute(select(AuditEvent).where(AuditEvent.action == "job.submit")).scalar_one()
        assert event.actor == RESEARCHER and event.details["parameters"] == {"year": 2021}
        assert event.details["sha256"] == job["notebook_sha256"]
        run = s.execute(select(CodeRun).where(CodeRun.kind == "job")).scalar_one()
        assert run.code == "year = 2000\n\nprint(secret_rows)" and run.kernel_id == f"job-{job['id']}"


@pytest.mark.parametrize(
    ("who", "path", "message"),
    [
        (CHECKER, "nb.ipynb", "not a researcher"),  # checkers do not run code on the data
        ("outsider", "nb.ipynb", "not a registered user"),
        (RESEARCHER, "../other/nb.ipynb", "'..'"),
        (RESEARCHER, "/etc/passwd.ipynb", "outside your workspace"),
        (RESEARCHER, "link.ipynb", "symbolic link"),
        (RESEARCHER, "missing.ipynb", "does not exist"),
        (RESEARCHER, "broken.ipynb", "not a readable Jupyter notebook"),
    ],
)
def test_bad_submissions_are_refused_audited_and_leave_nothing(jobs_world, who, path, message):
    world, home, jobs = jobs_world
    (home / "nb.ipynb").write_bytes(notebook_bytes("1"))
    (home / "broken.ipynb").write_text("{not json")
    os.symlink("/etc/hostname", home / "link.ipynb")
    with pytest.raises(JobRefused, match=message):
        jobs.submit(who, world.project, path)
    with session_scope(world.settings) as s:
        assert s.execute(select(Job)).first() is None
        refused = s.execute(select(AuditEvent).where(AuditEvent.action == "job.refused")).scalar_one()
        assert message.strip("'") in refused.details["reason"]
    assert not (world.settings.state_dir / "jobs").exists() or not any(
        (world.settings.state_dir / "jobs").iterdir()
    )


def test_a_suspended_project_runs_no_new_job(jobs_world):
    world, home, jobs = jobs_world
    (home / "nb.ipynb").write_bytes(notebook_bytes("1"))
    with session_scope(world.settings) as s:
        reg.change_project_status(s, ADMIN, world.project, "suspend", "audit")
    with pytest.raises(JobRefused, match="suspended"):
        jobs.submit(RESEARCHER, world.project, "nb.ipynb")


def test_one_person_cannot_flood_the_queue(jobs_world):
    world, home, jobs = jobs_world
    (home / "nb.ipynb").write_bytes(notebook_bytes("1"))
    for _ in range(MAX_WAITING_PER_USER):
        jobs.submit(RESEARCHER, world.project, "nb.ipynb")
    with pytest.raises(JobRefused, match="waiting"):
        jobs.submit(RESEARCHER, world.project, "nb.ipynb")


def test_people_see_and_cancel_only_their_own_jobs_in_that_project(jobs_world):
    world, home, jobs = jobs_world
    (home / "nb.ipynb").write_bytes(notebook_bytes("1"))
    job = jobs.submit(RESEARCHER, world.project, "nb.ipynb")
    assert [j["id"] for j in jobs.list(RESEARCHER, world.project)] == [job["id"]]
    assert jobs.list(LEAD, world.project) == []
    for who, project in ((LEAD, world.project), (RESEARCHER, "other-project")):
        with pytest.raises(JobNotFound):
            jobs.get(who, project, job["id"])
        with pytest.raises(JobNotFound):
            jobs.cancel(who, project, job["id"])
    cancelled = jobs.cancel(RESEARCHER, world.project, job["id"])
    assert cancelled["status"] == "stopped" and cancelled["reason"] == f"cancelled by {RESEARCHER}"
    assert not snapshot_path(world.settings, job["id"]).exists()
    with pytest.raises(JobRefused, match="already ended"):
        jobs.cancel(RESEARCHER, world.project, job["id"])
    with pytest.raises(JobNotFound):
        jobs.get(RESEARCHER, world.project, 2**40)


def test_job_limits_are_validated(registry, make_world):
    world = make_world()
    with session_scope(world.settings) as s:
        reg.set_project_limits(s, ADMIN, world.project, jobs=0, job_seconds=60)
        reg.set_project_limits(s, ADMIN, world.project, rerun_seconds=1800)
        for bad in ({"jobs": 65}, {"job_seconds": 5}, {"rerun_seconds": 5}):
            with pytest.raises(reg.RegistryError):
                reg.set_project_limits(s, ADMIN, world.project, **bad)


def test_a_jobs_crate_names_the_run_its_parameters_the_release_and_the_permit_check(jobs_world):
    from datetime import UTC, datetime

    from hub.jobs.crate import job_crate
    from tests.fixtures_crate import five_safes_problems, phases

    world, home, jobs = jobs_world
    (home / "nb.ipynb").write_bytes(notebook_bytes("1"))
    job = jobs.submit(RESEARCHER, world.project, "nb.ipynb", {"year": 2021, "regions": ["N"]})
    with session_scope(world.settings) as s:
        row = s.get(Job, job["id"])
        row.status, row.release = "done", 1
        row.started_at = row.finished_at = datetime(2026, 12, 5, tzinfo=UTC)
        crate = json.loads(job_crate(row, "tre.example"))
    assert five_safes_problems(crate) == []
    graph = {e["@id"]: e for e in crate["@graph"]}
    run = graph[f"#job-{job['id']}"]
    assert run["agent"] == {"@id": f"#person-{RESEARCHER}"} and run["actionStatus"].endswith(
        "Completed" + "ActionStatus"
    )
    assert {"@id": "#data-release-1"} in run["object"] and graph["#parameter-regions"]["value"] == '["N"]'
    assert graph["#notebook"]["sha256"] == job["notebook_sha256"]
    (permit,) = phases(crate)["ValidationCheck"]
    assert permit["actionStatus"].endswith("CompletedActionStatus")
    assert jobs.crate(RESEARCHER, world.project, job["id"])["@graph"]
    with pytest.raises(JobNotFound):
        jobs.crate(LEAD, world.project, job["id"])

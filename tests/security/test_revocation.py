"""Withdrawn access takes effect on running workspaces: every trigger stops them within 60 s.

A researcher whose access ends must not keep working in a workspace that is already running. Each
test starts a real workspace on a hub of its own, withdraws access one way, and times how long the
workspace survives: registry operations (hub.enforcement) stop it at once, the sweeper catches
expiries (every TRE_SWEEP_SECONDS, 15 s by default). Each stop is audited with its reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from tests.fixtures_hub import Hub, hub_of_its_own, own_workspace

pytestmark = [pytest.mark.docker, pytest.mark.slow]
DEADLINE = 60  # seconds: what the TRE promises


@pytest.fixture(scope="module")
def hub(tmp_path_factory, hub_image) -> Iterator[Hub]:
    yield from hub_of_its_own(tmp_path_factory, hub_image, "revocation")


def running_workspace(hub: Hub, name: str) -> tuple[str, str, str]:
    """A fresh user with a project of their own, started, with work in the home."""
    user, project, grant_id = own_workspace(hub, name)
    (hub.settings.home_dir(project, user) / "analysis.py").write_text("print('work in progress')\n")
    return user, project, grant_id


def seconds_until_stopped(hub: Hub, user: str, project: str, since: float) -> float:
    while hub.server(user, project) is not None:
        assert time.monotonic() - since < DEADLINE, f"{user}/{project} still running after {DEADLINE} s"
        time.sleep(0.5)
    return time.monotonic() - since


def assert_stop_audited(hub: Hub, user: str, project: str, reason_part: str) -> None:
    stops = [d for _, d in hub.audit_events("workspace.stop", project) if d["user"] == user]
    assert stops and reason_part in stops[-1]["reason"], stops


def test_removing_the_member_stops_their_workspace(hub):
    from hub.enforcement import remove_member
    from tests.fixtures_registry import LEAD

    user, project, _ = running_workspace(hub, "removed")
    started = time.monotonic()
    withdrawal = remove_member(hub.settings, LEAD, project, user)
    assert [(w.user, w.project) for w in withdrawal.stopped] == [(user, project)]
    assert seconds_until_stopped(hub, user, project, started) < DEADLINE
    assert_stop_audited(hub, user, project, "not a researcher")
    assert hub.request_start(user, project).status_code == 403  # and it cannot come back


def test_disabling_the_user_stops_their_workspace(hub):
    from hub.enforcement import disable_user
    from tests.fixtures_registry import ADMIN

    user, project, _ = running_workspace(hub, "disabled")
    started = time.monotonic()
    disable_user(hub.settings, ADMIN, user)
    assert seconds_until_stopped(hub, user, project, started) < DEADLINE
    assert_stop_audited(hub, user, project, "disabled")


def test_suspending_the_project_stops_its_workspaces(hub):
    from hub.enforcement import suspend_project
    from tests.fixtures_registry import ADMIN

    user, project, _ = running_workspace(hub, "suspended")
    started = time.monotonic()
    suspend_project(hub.settings, ADMIN, project, "audit finding")
    assert seconds_until_stopped(hub, user, project, started) < DEADLINE
    assert_stop_audited(hub, user, project, "suspended")


def test_closing_the_project_stops_its_workspaces_and_purges_homes(hub):
    from hub.enforcement import close_project
    from tests.fixtures_registry import ADMIN

    user, project, _ = running_workspace(hub, "closed")
    homes = hub.settings.homes_dir / project
    assert (homes / user / "analysis.py").is_file()
    started = time.monotonic()
    withdrawal = close_project(hub.settings, ADMIN, project, "study finished")
    assert seconds_until_stopped(hub, user, project, started) < DEADLINE
    assert withdrawal.purged_homes == [user] and withdrawal.release.deleted_releases == (1,)
    assert_stop_audited(hub, user, project, "closed")
    assert not homes.exists()
    purged = hub.audit_events("project.homes_purge", project)
    assert purged and purged[-1][1]["users"] == [user]


def test_revoking_the_grant_stops_the_workspace(hub):
    from hub.enforcement import revoke_grant
    from tests.fixtures_registry import CUSTODIAN

    user, project, grant_id = running_workspace(hub, "revoked")
    started = time.monotonic()
    revoke_grant(hub.settings, CUSTODIAN, grant_id, "consent withdrawn", rebuild=False)
    assert seconds_until_stopped(hub, user, project, started) < DEADLINE
    assert_stop_audited(hub, user, project, "no approved, unexpired dataset grant")


def test_an_expiring_project_stops_its_workspaces(hub):
    """Nobody acts: the project's end date passes, and the sweeper stops its workspaces."""
    from hub.kernel.db import session_scope
    from hub.registry.models import Project

    user, project, _ = running_workspace(hub, "expiring")
    started = time.monotonic()
    with session_scope(hub.settings) as s:  # time passes
        s.execute(update(Project).where(Project.slug == project).values(expires_at=datetime.now(UTC)))
    assert seconds_until_stopped(hub, user, project, started) < DEADLINE
    assert_stop_audited(hub, user, project, "expired")
    assert [a for a, _ in hub.audit_events("workspace.stop", project)] == ["tre-sweeper"]


def test_an_expiring_grant_stops_the_workspace(hub):
    from hub.kernel.db import session_scope
    from hub.registry.models import Grant

    user, project, grant_id = running_workspace(hub, "lapsed")
    started = time.monotonic()
    with session_scope(hub.settings) as s:
        s.execute(update(Grant).where(Grant.id == grant_id).values(expires_at=datetime.now(UTC)))
    assert seconds_until_stopped(hub, user, project, started) < DEADLINE
    assert_stop_audited(hub, user, project, "no approved, unexpired dataset grant")


def test_a_workspace_whose_data_was_withdrawn_stops_and_stays_closed(hub):
    """A release that still holds data of a grant no longer active (its rebuild failed, or has not
    run yet) must not stay open or open again."""
    import json

    from hub.kernel.db import session_scope
    from hub.registry.models import Grant

    user, project, grant_id = running_workspace(hub, "stale")
    release = hub.settings.current_release(project)
    (release / "manifest.json").write_text(json.dumps({"grants": [{"id": grant_id}, {"id": "g-withdrawn"}]}))
    started = time.monotonic()
    with session_scope(hub.settings) as s:  # another grant of this release was revoked meanwhile
        assert s.get(Grant, grant_id).status == "approved"
    assert seconds_until_stopped(hub, user, project, started) < DEADLINE
    assert_stop_audited(hub, user, project, "g-withdrawn")
    assert hub.request_start(user, project).status_code == 403

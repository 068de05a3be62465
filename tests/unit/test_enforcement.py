"""Which workspaces the sweeper and the registry operations stop (hub.enforcement.workspaces).

The hub is replaced by a recorder here; tests/security/test_revocation.py and test_hub_access.py
prove the same against a real hub and real containers.
"""

from __future__ import annotations

from hub.enforcement.workspaces import enforce
from hub.kernel.audit import AuditEvent
from hub.kernel.db import session_scope
from hub.workspaces.hub_api import RunningServer


class RecordingHub:
    def __init__(self, servers: list[RunningServer]) -> None:
        self.servers = servers
        self.stopped: list[tuple[str, str]] = []

    def running(self) -> list[RunningServer]:
        return self.servers

    def stop(self, user: str, project: str) -> bool:
        self.stopped.append((user, project))
        return True


def test_a_server_without_a_permit_stops_unless_its_start_is_still_pending(make_world, make_users):
    world = make_world()
    make_users("mallory", "eve")
    hub = RecordingHub(
        [
            RunningServer("mallory", world.project, None),  # running, never a member: stops
            RunningServer("eve", world.project, None, starting=True),  # her start refuses her itself
        ]
    )
    stopped = enforce(world.settings, "tre-sweeper", "periodic check", hub=hub)  # type: ignore[arg-type]
    assert hub.stopped == [("mallory", world.project)]
    assert [(s.user, s.project) for s in stopped] == [("mallory", world.project)]
    assert "not a researcher" in stopped[0].reason
    with session_scope(world.settings) as s:
        events = s.query(AuditEvent).filter(AuditEvent.action == "workspace.stop").all()
        assert [(e.actor, e.details["user"]) for e in events] == [("tre-sweeper", "mallory")]

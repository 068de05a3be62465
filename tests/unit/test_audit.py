"""The audit chain: every edit, deletion or reordering is detected; concurrent writers never fork it."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, func, select, text, update

from hub.kernel import audit
from hub.kernel.audit import AuditEvent
from hub.kernel.db import session_scope, upgrade
from hub.kernel.settings import get_settings


def _fill(settings, n: int = 5) -> None:
    with session_scope(settings) as s:
        for i in range(n):
            audit.record(s, "alice", "user.add", "thing", f"t{i}", {"i": i, "when": datetime.now(UTC)})


def _verify(settings) -> audit.VerifyResult:
    with session_scope(settings) as s:
        return audit.verify(s)


def test_empty_log_verifies(registry):
    result = _verify(registry)
    assert result.ok and result.count == 0 and result.head == audit.GENESIS_HASH


def test_chain_links_and_verifies(registry):
    _fill(registry)
    with session_scope(registry) as s:
        events = s.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars().all()
        assert events[0].prev_hash == audit.GENESIS_HASH
        assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
        assert events[0].time.tzinfo is not None  # comes back timezone-aware
        assert isinstance(events[0].details["when"], str)  # normalised to what JSON stores
    result = _verify(registry)
    assert result.ok and result.count == 5 and result.problems == []


def test_event_rolls_back_with_its_transaction(registry):
    with pytest.raises(RuntimeError), session_scope(registry) as s:
        audit.record(s, "alice", "user.add", "thing", "x")
        raise RuntimeError("boom")
    with session_scope(registry) as s:
        assert s.execute(select(func.count(AuditEvent.id))).scalar_one() == 0


@pytest.mark.parametrize(
    "field,value",
    [("actor", "mallory"), ("action", "user.disable"), ("object_id", "t9"), ("details", {"i": 99})],
)
def test_edited_event_detected(registry, field, value):
    _fill(registry)
    with session_scope(registry) as s:
        s.execute(update(AuditEvent).where(AuditEvent.id == 3).values({field: value}))
    result = _verify(registry)
    assert not result.ok
    assert any(p.startswith("event 3 ") and "edited" in p for p in result.problems)


def test_edited_time_detected(registry):
    _fill(registry)
    with session_scope(registry) as s:
        s.execute(update(AuditEvent).where(AuditEvent.id == 2).values(time=datetime(2020, 1, 1, tzinfo=UTC)))
    assert any("event 2 " in p for p in _verify(registry).problems)


def test_rehashed_edit_detected_at_next_event(registry):
    """An attacker who recomputes the edited event's hash still breaks the link to the next one."""
    _fill(registry)
    with session_scope(registry) as s:
        ev = s.get(AuditEvent, 3)
        ev.actor = "mallory"
        ev.hash = audit.event_hash(
            ev.prev_hash, ev.time, ev.actor, ev.action, ev.object_type, ev.object_id, ev.details
        )
    result = _verify(registry)
    assert not result.ok
    assert any(p.startswith("event 4 ") for p in result.problems)


def test_deleted_event_detected(registry):
    _fill(registry)
    with session_scope(registry) as s:
        s.execute(delete(AuditEvent).where(AuditEvent.id == 2))
    result = _verify(registry)
    assert not result.ok
    assert any(p.startswith("event 3 ") and "deleted" in p for p in result.problems)


def test_reordered_events_detected(registry):
    _fill(registry)
    with session_scope(registry) as s:
        # Swap rows 2 and 4 by moving their ids (via a free id, as ids are unique).
        s.execute(text("UPDATE audit_events SET id = 1000 WHERE id = 2"))
        s.execute(text("UPDATE audit_events SET id = 2 WHERE id = 4"))
        s.execute(text("UPDATE audit_events SET id = 4 WHERE id = 1000"))
    result = _verify(registry)
    assert not result.ok
    assert {p.split()[1] for p in result.problems} >= {"2", "4"}


def test_concurrent_writers_keep_one_chain(registry):
    errors: list[Exception] = []

    def writer(name: str) -> None:
        try:
            for i in range(15):
                with session_scope(registry) as s:
                    audit.record(s, name, "user.enable", "thing", str(i))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"w{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    result = _verify(registry)
    assert result.ok and result.count == 60


def test_concurrent_processes_keep_one_chain(registry):
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from hub.kernel import audit\n"
        "from hub.kernel.db import session_scope\n"
        "from hub.kernel.settings import get_settings\n"
        "for i in range(10):\n"
        "    with session_scope(get_settings()) as s:\n"
        "        audit.record(s, sys.argv[1], 'user.role', 'thing', str(i))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, f"p{n}"]) for n in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    result = _verify(registry)
    assert result.ok and result.count == 30


def test_only_catalogued_actions_are_recorded(tre_root):
    settings = get_settings()
    upgrade(settings)
    with pytest.raises(ValueError, match="not a valid AuditAction"), session_scope(settings) as s:
        audit.record(s, "alice", "user.adds", "user", "x")  # a typo of a catalogued action
    with session_scope(settings) as s:
        assert audit.verify(s).count == 0

"""The registry on PostgreSQL: migrations, time zones, JSON, the audit chain under concurrent writers.

Runs against TRE_TEST_POSTGRES_URL (default: the CI server) in a temporary database that is dropped
afterwards. Skipped only when no server answers and CI is not set; in CI it must run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text, update

from hub import registry as reg
from hub.kernel import audit
from hub.kernel.audit import AuditEvent
from hub.kernel.db import session_scope, upgrade
from hub.kernel.settings import Settings, get_settings
from hub.registry.access import project_roles, workspace_permit
from hub.registry.models import Grant
from tests.fixtures_postgres import temporary_postgres_databases
from tests.fixtures_registry import publish_release, write_cohort

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_settings(tre_root, monkeypatch) -> Iterator[Settings]:
    with temporary_postgres_databases("tre_test") as (url,):
        monkeypatch.setenv("TRE_DB_URL", url)
        settings = get_settings()
        upgrade(settings)
        yield settings


def test_migrations_match_models_and_rerun_cleanly(pg_settings):
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from tests.fixtures_registry import schema_check_config

    upgrade(pg_settings)  # second run is a no-op
    cfg = schema_check_config(pg_settings.db_url)
    command.check(cfg)  # raises if models and migrations differ
    with session_scope(pg_settings) as s:
        current = MigrationContext.configure(s.connection()).get_current_heads()
    assert set(current) == set(ScriptDirectory.from_config(cfg).get_heads())


def test_registry_flow_on_postgres(pg_settings, tmp_path):
    files = write_cohort(tmp_path / "src")
    with session_scope(pg_settings) as s:
        reg.add_user(s, "root", "admin", is_admin=True)
        for name in ("cus", "lead", "res"):
            reg.add_user(s, "admin", name, is_custodian=name == "cus")
        reg.register_dataset(
            s, "cus", "diabetes", [reg.SourceFile(k, v) for k, v in files.items()], "national_id"
        )
        reg.create_project(
            s, "admin", "diab-study", "Diabetes", "lead", datetime.now(UTC) + timedelta(days=30)
        )
        reg.add_member(s, "lead", "diab-study", "res")
        grant = reg.request_grant(s, "lead", "diab-study", "diabetes", {"patients": ["*"]})
        reg.decide_grant(s, "cus", grant.id, approve=True)
        grant_id = grant.id
    publish_release(pg_settings, "diab-study", 1)
    with session_scope(pg_settings) as s:
        stored = s.get(Grant, grant_id)
        assert stored.approved_at.tzinfo is not None and stored.approved_at.utcoffset() == timedelta(0)
        assert stored.columns == {"patients": ["national_id", "birth_date", "sex", "postcode"]}
        assert workspace_permit(s, "res", "diab-study", pg_settings).release_number == 1
        assert project_roles(s, "res", "diab-study") == {"researcher"}
        result = audit.verify(s)
        assert result.ok and result.count == 9


def test_failed_operation_leaves_nothing_on_postgres(pg_settings):
    with session_scope(pg_settings) as s:
        reg.add_user(s, "root", "admin", is_admin=True)
    with pytest.raises(reg.RegistryError), session_scope(pg_settings) as s:
        reg.add_user(s, "admin", "lead")
        reg.create_project(s, "admin", "p-one", "P", "lead", datetime(2000, 1, 1, tzinfo=UTC))
    with session_scope(pg_settings) as s:
        assert reg.find_user(s, "lead") is None
        assert audit.verify(s).count == 1


def test_concurrent_audit_writers_keep_one_chain_on_postgres(pg_settings):
    errors: list[Exception] = []

    def writer(n: int) -> None:
        try:
            for i in range(20):
                with session_scope(pg_settings) as s:
                    audit.record(s, f"w{n}", "user.enable", "thing", str(i), {"n": n})
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with session_scope(pg_settings) as s:
        result = audit.verify(s)
    assert result.ok and result.count == 80


def test_tampering_detected_on_postgres(pg_settings):
    with session_scope(pg_settings) as s:
        for i in range(4):
            audit.record(s, "alice", "user.add", "thing", str(i), {"i": i, "nested": {"b": 1, "a": [1.5, 2]}})
    with session_scope(pg_settings) as s:
        assert audit.verify(s).ok
        s.execute(update(AuditEvent).where(AuditEvent.id == 2).values(details={"i": 99}))
    with session_scope(pg_settings) as s:
        assert any(p.startswith("event 2 ") for p in audit.verify(s).problems)
        s.execute(text("DELETE FROM audit_events WHERE id = 3"))
    with session_scope(pg_settings) as s:
        problems = audit.verify(s).problems
        assert any(p.startswith("event 4 ") and "deleted" in p for p in problems)
        assert s.execute(select(AuditEvent.id).order_by(AuditEvent.id)).scalars().all() == [1, 2, 4]

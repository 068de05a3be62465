"""The code log: append-only and hash-chained like the audit log, searched by `tre audit code`."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import timedelta

from sqlalchemy import delete, update
from typer.testing import CliRunner

from hub.cli import app
from hub.guard.budget import Budget
from hub.guard.recorder import AUDITS_PER_MINUTE, Recorder
from hub.kernel import codelog
from hub.kernel.audit import AuditEvent
from hub.kernel.audit_actions import AuditAction
from hub.kernel.clock import utcnow
from hub.kernel.db import session_scope


def run(code: str, user: str = "alice", project: str = "proj-a", minutes_ago: int = 0) -> codelog.Run:
    when = utcnow() - timedelta(minutes=minutes_ago)
    return codelog.Run(when, user, project, "k" * 36, "session", f"msg-{code[:8]}", "execute", code)


def test_runs_chain_and_any_edit_deletion_or_reordering_shows(registry):
    with session_scope(registry) as s:
        codelog.append(s, [run("import pandas as pd"), run("df = pd.read_parquet('/data/x')")])
    with session_scope(registry) as s:
        codelog.append(s, [run("print(df.head())")])
    with session_scope(registry, readonly=True) as s:
        check = codelog.verify(s)
        assert check.ok and check.count == 3
    with session_scope(registry) as s:
        s.execute(update(codelog.CodeRun).where(codelog.CodeRun.id == 2).values(code="df = 1"))
    with session_scope(registry, readonly=True) as s:
        assert [p for p in codelog.verify(s).problems if "was edited" in p]
    with session_scope(registry) as s:
        s.execute(
            update(codelog.CodeRun)
            .where(codelog.CodeRun.id == 2)
            .values(code="df = pd.read_parquet('/data/x')")
        )
        s.execute(delete(codelog.CodeRun).where(codelog.CodeRun.id == 1))
    with session_scope(registry, readonly=True) as s:
        assert [p for p in codelog.verify(s).problems if "does not follow" in p]


def test_very_long_code_is_kept_cut_with_the_hash_of_all_of_it(registry):
    code = "x = 1\n" * (codelog.MAX_CODE_CHARS // 3)
    with session_scope(registry) as s:
        codelog.append(s, [run(code)])
    with session_scope(registry, readonly=True) as s:
        [row] = codelog.search(s)
        assert len(row.code) == codelog.MAX_CODE_CHARS and len(code) > codelog.MAX_CODE_CHARS
        assert row.code_sha256 == hashlib.sha256(code.encode()).hexdigest()
        assert codelog.verify(s).ok


def test_tre_audit_code_searches_and_verify_covers_the_code_log(registry, monkeypatch):
    with session_scope(registry) as s:
        codelog.append(
            s,
            [
                run("old = 1", minutes_ago=120),
                run("secret = open('/data/patients.parquet','rb').read()"),
                run("bob_was_here()", user="bob", project="proj-b"),
            ],
        )
    runner = CliRunner()
    result = runner.invoke(app, ["audit", "code", "--user", "alice", "--grep", "/data/", "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert row["code"].startswith("secret = open(") and row["project"] == "proj-a"
    since = (utcnow() - timedelta(minutes=30)).isoformat()
    recent = json.loads(runner.invoke(app, ["audit", "code", "--since", since, "--json"]).stdout)
    assert {r["user"] for r in recent} == {"alice", "bob"} and len(recent) == 2
    text = runner.invoke(app, ["audit", "code", "--project", "proj-b"]).stdout
    assert "bob_was_here()" in text and "secret" not in text
    assert runner.invoke(app, ["audit", "verify"]).exit_code == 0
    with session_scope(registry) as s:
        s.execute(update(codelog.CodeRun).where(codelog.CodeRun.id == 2).values(code="nothing = 0"))
    broken = runner.invoke(app, ["audit", "verify"])
    assert broken.exit_code == 1 and "code run 2" in broken.stderr


def test_the_recorder_writes_batches_and_rate_limits_refusal_audits(registry):
    recorder = Recorder(registry, Budget())
    recorder.code_run(run("a = 1"))
    for _ in range(AUDITS_PER_MINUTE + 5):  # a script hammering a refused path
        recorder.refusal("alice", "proj-a", AuditAction.GUARD_REFUSED, "terminals", {"path": "/terminals"})
    recorder.refusal(
        "alice", "proj-a", AuditAction.GUARD_REFUSED, "exporting notebooks", {"path": "/nbconvert"}
    )
    recorder.budget.admit(("alice", "proj-a"), 1234, 10_000, utcnow())
    asyncio.run(recorder.flush())
    with session_scope(registry, readonly=True) as s:
        events = s.query(AuditEvent).filter_by(action="guard.refused").all()
        assert len(events) == AUDITS_PER_MINUTE + 1
        assert {e.details["reason"] for e in events} == {"terminals", "exporting notebooks"}
        assert len(codelog.search(s)) == 1
    fresh = Recorder(registry, Budget())
    fresh.load_today()  # a restarted guard takes up the day's count
    assert fresh.budget.usage(("alice", "proj-a"), utcnow()).sent == 1234

"""The demo's build steps (hub.demo) without Docker: a second run changes nothing and reuses the logins."""

from __future__ import annotations

import json

import duckdb
from sqlalchemy import func, select

from hub.demo import stack as demo
from hub.kernel.audit import AuditEvent
from hub.kernel.db import session_scope
from hub.kernel.settings import get_settings
from hub.provisioning import read_manifest


def _build(settings) -> list[demo.Account]:
    progress = demo.DemoProgress()
    data = demo.ensure_data(settings, 400, 0, progress)
    demo.ensure_registry(settings, data, progress)
    accounts = demo.ensure_logins(settings, progress)
    demo.ensure_provisioned(settings, progress)
    return accounts


def _events(settings) -> int:
    with session_scope(settings, readonly=True) as s:
        return s.execute(select(func.count(AuditEvent.id))).scalar_one()


def test_second_run_reuses_everything(tre_root) -> None:
    settings = get_settings()
    first = _build(settings)
    events = _events(settings)
    second = _build(settings)
    assert second == first
    assert _events(settings) == events  # no registry change, no new release
    saved = settings.state_dir / demo.ACCOUNTS_FILE
    assert saved.stat().st_mode & 0o777 == 0o600
    assert [a["username"] for a in json.loads(saved.read_text())] == list(demo.CAST)


def test_projects_get_different_grants(tre_root) -> None:
    settings = get_settings()
    _build(settings)
    diabetes = read_manifest(settings.project_dir(demo.DIABETES_PROJECT))
    linked = read_manifest(settings.project_dir(demo.LINKED_PROJECT))
    assert diabetes and linked
    assert [d["name"] for d in diabetes["datasets"]] == ["diabetes"]
    assert [d["name"] for d in linked["datasets"]] == ["diabetes", "oncology"]
    assert all(d["remove_opted_out"] for d in diabetes["datasets"] + linked["datasets"])
    patients = next(t for t in diabetes["datasets"][0]["tables"] if t["name"] == "patients")
    assert "nhs_number" in patients["pseudonymised"]
    assert "age_band" in patients["columns"] and "birth_date" not in patients["columns"]
    # Linking works: the same pseudonym for a person in both of the linked project's datasets.
    con = duckdb.connect()
    release = settings.current_release(demo.LINKED_PROJECT)
    con.execute(f"SET file_search_path = '{release}'")
    con.execute(f"ATTACH '{release / 'catalog.duckdb'}' AS c (READ_ONLY)")
    linked_people = con.execute(
        "SELECT count(*) FROM c.diabetes.patients d JOIN c.oncology.patients o USING (nhs_number)"
    ).fetchone()
    assert linked_people is not None and linked_people[0] > 0


def test_the_demo_starts_tre_hub_again_when_it_dies_and_gives_up_when_it_keeps_dying(monkeypatch):
    """`make demo` keeps the TRE up: a `tre hub` that dies is started again with the workspaces kept;
    one that keeps dying ends the demo with its log (real restarts: tests/integration/test_restarts.py)."""
    import click
    import pytest

    from hub.cli import demo

    class DyingHub:
        log, started, stops = "hub.log", 0, []

        def alive(self) -> bool:
            return False

        def tail(self) -> str:
            return "the last lines"

        def stop(self, keep_workspaces: bool = False) -> None:
            self.stops.append(keep_workspaces)

        def start(self) -> None:
            self.started += 1

    monkeypatch.setattr(demo.time, "sleep", lambda _s: None)
    hub = DyingHub()
    with pytest.raises((SystemExit, click.exceptions.Exit)):
        demo._keep_running(hub)
    assert hub.started == demo.RESTARTS_ALLOWED
    assert hub.stops == [True] * demo.RESTARTS_ALLOWED, "a restart must never remove the workspaces"

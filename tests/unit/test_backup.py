"""`tre backup` / `tre restore`: a consistent copy taken while the TRE is written to, restored onto a
fresh root with every byte checked; a backup that was changed, added to or pointed outside its
folder is refused and restores nothing."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from egress.review.base import EgressContext
from egress.review.commands import EgressCommands
from hub.cli.backup import check_restored
from hub.host.backup import MANIFEST, BackupError, backup, restore, verify
from hub.kernel import audit
from hub.kernel.db import session_scope
from hub.kernel.settings import Settings
from hub.provisioning import provision_project
from hub.workspaces.login import create_login
from tests.fixtures_registry import ADMIN, CUSTODIAN, RESEARCHER, write_optout

TRE = str(Path(sys.executable).parent / "tre")
PROJECT = "diab-release"


@pytest.fixture
def world(tre_root, make_world, tmp_path) -> Settings:
    """A TRE with a provisioned release, a submitted egress request (a blob), a hub login, a home."""
    from hub import registry as reg

    w = make_world(PROJECT)
    optout = write_optout(tmp_path / "optout", ["9000000003"])
    with session_scope(w.settings) as s:
        reg.register_dataset(
            s, CUSTODIAN, "optout", [reg.SourceFile("optout", optout)], "national_id", kind="optout"
        )
    provision_project(w.settings, PROJECT, CUSTODIAN)
    home = w.settings.home_dir(PROJECT, RESEARCHER)
    (home / "out").mkdir(parents=True)
    (home / "out" / "counts.csv").write_text("region,count\nNorth,12\nSouth,30\n")
    commands = EgressCommands(EgressContext(w.settings))
    rid = commands.create_request(RESEARCHER, PROJECT, "Counts by region")
    gid = commands.add_group(RESEARCHER, rid, "tables", "Patients by region", "Counts of 10 or more only")
    commands.add_file(RESEARCHER, rid, gid, "out/counts.csv", "output")
    commands.submit(RESEARCHER, rid)
    create_login(RESEARCHER, "a long enough password", w.settings)
    return w.settings


def tree(root: Path) -> dict[str, tuple]:
    """Every path under root: (kind, mode, bytes or link target), for comparing two trees."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            out[rel] = ("dir", stat.S_IMODE(st.st_mode))
        else:
            out[rel] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes())
    return out


def without_live_databases(t: dict[str, tuple]) -> dict[str, tuple]:
    return {k: v for k, v in t.items() if not k.startswith(("state/tre.sqlite", "state/jupyterhub.sqlite"))}


def test_backup_while_written_to_then_restore_gives_back_the_same_tre(world, tmp_path):
    settings = world
    stop = threading.Event()

    def writer() -> None:  # the TRE keeps working while the backup runs
        while not stop.is_set():
            with session_scope(settings) as s:
                audit.record(s, ADMIN, "user.add", "user", "during-backup", {"n": 1})

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        manifest = backup(settings, tmp_path / "b", homes=True)
    finally:
        stop.set()
        thread.join()
    assert manifest["databases"] == {"registry": "sqlite", "hub": "sqlite"}
    assert verify(tmp_path / "b")[1] == []
    before = without_live_databases(tree(settings.root))
    shutil.rmtree(settings.root)

    restore(tmp_path / "b", settings)
    assert without_live_databases(tree(settings.root)) == before
    assert all(ok for _, ok, _ in check_restored(settings)), check_restored(settings)
    assert stat.S_IMODE((settings.state_dir / "tre.sqlite").stat().st_mode) == 0o600
    assert (settings.root / "projects/diab-release/current").is_symlink()
    with sqlite3.connect(settings.state_dir / "jupyterhub.sqlite") as con:
        assert (
            con.execute(f"select count(*) from users_info where username='{RESEARCHER}'").fetchone()[0] == 1
        )


def test_homes_only_when_asked_and_the_backup_is_private(world, tmp_path):
    backup(world, tmp_path / "b")
    assert not (tmp_path / "b/root/homes").exists()
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o700
    for path in (tmp_path / "b").rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def refused(backup_dir: Path, settings, expect: str) -> None:
    with pytest.raises(BackupError, match=expect):
        restore(backup_dir, settings)
    assert not settings.root.exists() or not any(settings.root.iterdir()), "a refused restore wrote files"


@pytest.fixture
def taken(world, tmp_path) -> tuple[Path, object]:
    backup(world, tmp_path / "b")
    shutil.rmtree(world.root)
    return tmp_path / "b", world


def test_a_changed_byte_is_refused_and_nothing_restored(taken):
    folder, settings = taken
    blob = next(p for p in (folder / "root/egress/blobs/sha256").rglob("*") if p.is_file())
    data = bytearray(blob.read_bytes())
    data[0] ^= 1
    blob.write_bytes(bytes(data))
    refused(folder, settings, "SHA-256 differs")


def test_an_added_file_or_a_missing_one_is_refused(taken):
    folder, settings = taken
    (folder / "root/keys/planted.key").write_text("x")
    refused(folder, settings, "planted.key: not in the manifest")
    (folder / "root/keys/planted.key").unlink()
    (folder / "databases/hub.sqlite").unlink()
    refused(folder, settings, "databases/hub.sqlite: missing")


def test_a_manifest_pointing_outside_the_backup_or_root_is_refused(taken):
    folder, settings = taken
    manifest = json.loads((folder / MANIFEST).read_text())
    link = next(e for e in manifest["entries"] if e["kind"] == "link")
    link["target"] = "../../../../etc"
    manifest["entries"].append({**manifest["entries"][0], "path": "root/../../outside"})
    (folder / MANIFEST).write_text(json.dumps(manifest))
    refused(folder, settings, "links outside the TRE root")


def test_restore_only_onto_a_fresh_root(taken):
    folder, settings = taken
    settings.root.mkdir()
    (settings.root / "state").mkdir()
    with pytest.raises(BackupError, match="not empty"):
        restore(folder, settings)


def test_backup_refuses_a_folder_that_is_not_empty_or_inside_the_root(world, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(BackupError, match="not empty"):
        backup(world, tmp_path / "full")
    with pytest.raises(BackupError, match="inside the TRE root"):
        backup(world, world.root / "backup")


def test_the_commands_back_up_restore_and_report_the_checks(world, tmp_path):
    env = {**os.environ, "TRE_ROOT": str(world.root)}
    done = subprocess.run([TRE, "backup", str(tmp_path / "b")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "databases: registry (sqlite), hub (sqlite)" in done.stdout
    fresh = {**env, "TRE_ROOT": str(tmp_path / "restored")}
    done = subprocess.run(
        [TRE, "restore", str(tmp_path / "b"), "--json"], env=fresh, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    checks = {c["what"]: c for c in json.loads(done.stdout)["checks"]}
    assert all(c["ok"] for c in checks.values()), checks
    assert "1 match their SHA-256" in checks["egress files"]["detail"]
    assert subprocess.run([TRE, "audit", "verify"], env=fresh, capture_output=True).returncode == 0
    # Again onto the same root: refused, and says so in one line.
    done = subprocess.run([TRE, "restore", str(tmp_path / "b")], env=fresh, capture_output=True, text=True)
    assert done.returncode == 1 and "not empty" in done.stderr


@pytest.fixture
def postgres_databases(tre_root, monkeypatch):
    """The TRE's two databases on PostgreSQL (set before the world is built), plus two empty ones to
    restore into."""
    from tests.fixtures_postgres import temporary_postgres_databases

    with temporary_postgres_databases("bk_reg", "bk_hub", "rs_reg", "rs_hub") as urls:
        monkeypatch.setenv("TRE_DB_URL", urls[0])
        monkeypatch.setenv("TRE_HUB_DB_URL", urls[1])
        yield urls


@pytest.mark.postgres
def test_postgresql_databases_travel_through_pg_dump_and_pg_restore(postgres_databases, world, tmp_path):
    import dataclasses

    from sqlalchemy import func, select

    from hub.kernel.audit import AuditEvent

    assert world.db_url.startswith("postgresql")
    manifest = backup(world, tmp_path / "b")
    assert manifest["databases"] == {"registry": "postgresql", "hub": "postgresql"}
    assert (tmp_path / "b/databases/registry.pgdump").is_file()
    elsewhere = dataclasses.replace(
        world,
        root=tmp_path / "restored",
        db_url_override=postgres_databases[2],
        hub_db_url_override=postgres_databases[3],
    )
    restore(tmp_path / "b", elsewhere)
    assert all(ok for _, ok, _ in check_restored(elsewhere)), check_restored(elsewhere)
    counts = []
    for settings in (world, elsewhere):
        with session_scope(settings, readonly=True) as s:
            counts.append(s.execute(select(func.count(AuditEvent.id))).scalar_one())
    assert counts[0] == counts[1] > 0
    # SQLite here, PostgreSQL in the backup: refused before anything is written.
    sqlite = dataclasses.replace(world, root=tmp_path / "r2", db_url_override=None, hub_db_url_override=None)
    with pytest.raises(BackupError, match="is postgresql but this TRE is configured for sqlite"):
        restore(tmp_path / "b", sqlite)

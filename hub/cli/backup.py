"""`tre backup DIR` and `tre restore DIR` (hub.host.backup), with a progress bar, and after a restore
the checks that say the TRE came back whole: audit and code log chains, egress files, data releases."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hub.cli._common import console, fail, print_json
from hub.cli._registry import JsonOption

if TYPE_CHECKING:
    from hub.kernel.settings import Settings


@contextlib.contextmanager
def _bar(title: str, total: int, quiet: bool) -> Iterator:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    if quiet:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(title, total=total or None)
        yield lambda _path, done: bar.advance(task, done)


def backup(
    dest: Annotated[Path, typer.Argument(help="A new (or empty) folder outside the TRE root.")],
    homes: Annotated[bool, typer.Option("--homes", help="Also copy researchers' home folders.")] = False,
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Back up the running TRE: databases (SQLite backup API / pg_dump), keys, state, egress files,
    data releases, optionally homes; every file hashed in DEST/manifest.json."""
    from hub.host.backup import BackupError, estimate_bytes
    from hub.host.backup import backup as take_backup
    from hub.kernel.settings import Settings

    settings = Settings.from_env()
    try:
        with _bar("backing up", estimate_bytes(settings, homes), as_json) as progress:
            manifest = take_backup(settings, dest, homes=homes, progress=progress)
    except (BackupError, OSError) as exc:
        fail(str(exc))
    files = [e for e in manifest["entries"] if e["kind"] == "file"]
    total = sum(e["bytes"] for e in files)
    if as_json:
        print_json(
            {"backup": str(dest), "files": len(files), "bytes": total, "databases": manifest["databases"]}
        )
        return
    kinds = ", ".join(f"{k} ({v})" for k, v in manifest["databases"].items())
    console.print(
        f"[green]✓[/] {len(files)} files, {total:,} bytes in {dest}; databases: {kinds}", soft_wrap=True
    )
    console.print("Keep it off this machine: it holds the keys and every researcher's outputs.")


def restore(
    source: Annotated[Path, typer.Argument(help="A folder written by `tre backup`.")],
    as_json: Annotated[bool, JsonOption] = False,
) -> None:
    """Restore a backup onto a fresh TRE root (TRE_ROOT, new or empty), after checking every file's
    hash; then verify the audit chain, the egress files and the data releases."""
    from hub.host.backup import BackupError, read_manifest
    from hub.host.backup import restore as put_back
    from hub.kernel.settings import Settings

    settings = Settings.from_env()
    try:
        total = sum(e["bytes"] for e in read_manifest(source)["entries"] if e["kind"] == "file")
        with _bar("checking and restoring", total, as_json) as progress:
            put_back(source, settings, progress=progress)
    except (BackupError, OSError) as exc:
        fail(str(exc))
    checks = check_restored(settings)
    if as_json:
        print_json(
            {
                "root": str(settings.root),
                "checks": [{"what": w, "ok": ok, "detail": d} for w, ok, d in checks],
            }
        )
    else:
        for what, ok, detail in checks:
            mark = "[green]✓[/]" if ok else "[bold red]✗[/]"
            console.print(f"{mark} {what}: {detail}", highlight=False, soft_wrap=True)
    if not all(ok for _, ok, _ in checks):
        raise typer.Exit(1)


def check_restored(settings: Settings) -> list[tuple[str, bool, str]]:
    """(what, ok, detail) for each part a TRE needs whole: the chains, every egress file, every release."""
    from sqlalchemy import select

    from egress.review.models import EgressFile
    from egress.review.storage import BlobStore
    from hub.kernel import audit, codelog
    from hub.kernel.db import session_scope, upgrade
    from hub.kernel.hashing import file_sha256
    from hub.provisioning import read_manifest, releases

    upgrade(settings)
    with session_scope(settings, readonly=True) as s:
        chain, code = audit.verify(s), codelog.verify(s)
        hashes = set(s.execute(select(EgressFile.sha256)).scalars())
    store = BlobStore(settings.egress_dir)
    bad_blobs = sorted(h for h in hashes if not store.path(h).is_file() or file_sha256(store.path(h)) != h)
    bad_files: list[str] = []
    release_count = 0
    projects = (
        sorted(p for p in settings.projects_dir.iterdir() if p.is_dir())
        if settings.projects_dir.is_dir()
        else []
    )
    for project in projects:
        for number in releases(project):
            release_count += 1
            manifest = read_manifest(project, number) or {"files": []}
            folder = project / "releases" / str(number)
            for f in manifest["files"]:
                path = folder / f["path"]
                if not path.is_file() or file_sha256(path) != f["sha256"]:
                    bad_files.append(f"{project.name}/{number}/{f['path']}")
    return [
        (
            "audit log",
            chain.ok,
            f"{chain.count} events, head {chain.head}" if chain.ok else "; ".join(chain.problems[:3]),
        ),
        ("code log", code.ok, f"{code.count} code runs" if code.ok else "; ".join(code.problems[:3])),
        (
            "egress files",
            not bad_blobs,
            f"{len(hashes)} match their SHA-256" if not bad_blobs else f"differ: {bad_blobs[:3]}",
        ),
        (
            "data releases",
            not bad_files,
            f"{release_count} releases match their manifests"
            if not bad_files
            else f"differ: {bad_files[:3]}",
        ),
    ]

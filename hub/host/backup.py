"""`tre backup DIR` / `tre restore DIR`: a consistent online copy of a TRE, and its return onto a fresh
root, refused when any byte differs from what the backup recorded.

What a backup holds (under DIR, described by DIR/manifest.json: each entry's path, kind, mode,
owner, size and SHA-256):
- databases/registry.* and databases/hub.*: the registry (with egress and the code log) and
  JupyterHub's database, each through its own backup mechanism: SQLite's online backup API (a
  consistent snapshot while the TRE runs) or `pg_dump` (custom format) for PostgreSQL;
- root/...: everything else under the TRE root, taken after the databases (files the snapshot names
  are immutable: content-addressed egress blobs, published releases): state/ (secrets, logins),
  keys/, egress/ (blobs, released bundles), projects/ (every kept release with its manifest), and
  homes/ only when asked (they can be large, and they hold researchers' work in progress).
Left out: run-time files (`*.pid`), provisioning builds in progress (`.build-*`), sockets.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit, urlunsplit

from hub.kernel.clock import utcnow
from hub.kernel.settings import Settings

FORMAT = 1
MANIFEST = "manifest.json"
CHUNK = 1 << 20
SKIPPED_SUFFIXES = (".pid",)
SKIPPED_PREFIXES = (".build-",)

# (item path, bytes of it just done): a progress bar's feed
Progress = Callable[[str, int], None]


class BackupError(RuntimeError):
    """The backup or restore cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Entry:
    path: str  # POSIX, relative to the backup folder
    kind: str  # "file" | "dir" | "link"
    mode: int
    uid: int
    gid: int
    bytes: int = 0
    sha256: str = ""
    target: str = ""  # a link's target (relative, inside the root)


# --- databases ---------------------------------------------------------------------------------------


def _database_urls(settings: Settings) -> dict[str, str]:
    return {"registry": settings.db_url, "hub": settings.hub_db_url}


def _sqlite_path(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def _libpq_url(url: str) -> str:
    """postgresql+psycopg://... -> postgresql://... (what pg_dump and pg_restore read)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql"))


def _dump_database(name: str, url: str, dest: Path) -> Path:
    folder = dest / "databases"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = _sqlite_path(url)
    if path is not None:
        if not path.is_file():
            raise BackupError(f"the {name} database {path} does not exist; is TRE_ROOT right?")
        out = folder / f"{name}.sqlite"
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        target = sqlite3.connect(out)
        try:
            source.backup(target)  # a consistent snapshot, writers keep going
        finally:
            target.close()
            source.close()
        return out
    if url.startswith("postgresql"):
        out = folder / f"{name}.pgdump"
        done = subprocess.run(
            ["pg_dump", "--format=custom", "--no-owner", f"--file={out}", f"--dbname={_libpq_url(url)}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise BackupError(f"pg_dump of the {name} database failed: {done.stderr.strip()}")
        return out
    raise BackupError(
        f"the {name} database URL is neither SQLite nor PostgreSQL; back it up with its own tools"
    )


def _load_database(name: str, url: str, backup_dir: Path) -> None:
    path = _sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.restore")
        shutil.copyfile(backup_dir / "databases" / f"{name}.sqlite", tmp)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        return
    done = subprocess.run(
        [
            "pg_restore",
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            f"--dbname={_libpq_url(url)}",
            str(backup_dir / "databases" / f"{name}.pgdump"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BackupError(f"pg_restore of the {name} database failed: {done.stderr.strip()}")


def _database_kind(url: str) -> str:
    return "sqlite" if _sqlite_path(url) is not None else "postgresql"


# --- files ---------------------------------------------------------------------------------------------


def _skip(path: Path, settings: Settings, homes: bool, databases: set[Path]) -> bool:
    name = path.name
    if name.endswith(SKIPPED_SUFFIXES) or name.startswith(SKIPPED_PREFIXES):
        return True
    if not homes and path == settings.homes_dir:
        return True
    # The live database files (and SQLite's journals): they travel as snapshots under databases/.
    return any(
        path == db or (name.startswith(db.name + "-") and path.parent == db.parent) for db in databases
    )


def _walk(root: Path, skip: Callable[[Path], bool]) -> Iterator[Path]:
    for current, dirs, files in os.walk(root, followlinks=False):
        here = Path(current)
        dirs[:] = sorted(d for d in dirs if not skip(here / d))
        for d in dirs:
            if (here / d).is_symlink():
                yield here / d
        yield from (here / f for f in sorted(files) if not skip(here / f))
        for d in dirs:
            if not (here / d).is_symlink():
                yield here / d


def _copy_hashed(src: Path, dst: Path, rel: str, progress: Progress | None) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(CHUNK):
            digest.update(chunk)
            fout.write(chunk)
            size += len(chunk)
            if progress:
                progress(rel, len(chunk))
        fout.flush()
        os.fsync(fout.fileno())
    return size, digest.hexdigest()


def _hash(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _entry(path: Path, rel: str, **kw: object) -> Entry:
    st = path.lstat()
    return Entry(rel, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid, **kw)  # type: ignore[arg-type]


def estimate_bytes(settings: Settings, homes: bool = False) -> int:
    """Bytes the files under the root will take (for a progress bar; databases not counted)."""
    databases = {p for p in map(_sqlite_path, _database_urls(settings).values()) if p}
    total = 0
    for path in _walk(settings.root, lambda p: _skip(p, settings, homes, databases)):
        if path.is_file() and not path.is_symlink():
            total += path.lstat().st_size
    return total


def backup(settings: Settings, dest: Path, *, homes: bool = False, progress: Progress | None = None) -> dict:
    """Copy the TRE at `settings.root` into `dest` (new or empty) and write its manifest."""
    root = settings.root
    if not (root / "state").is_dir():
        raise BackupError(f"{root} holds no TRE (no state/ folder); set TRE_ROOT to the TRE's root")
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} is not empty; back up into a new folder")
    if dest.resolve().is_relative_to(root.resolve()):
        raise BackupError(f"{dest} is inside the TRE root {root}; back up somewhere else")
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(dest, 0o700)
    entries: list[Entry] = []
    databases: dict[str, str] = {}
    for name, url in _database_urls(settings).items():
        out = _dump_database(name, url, dest)
        rel = out.relative_to(dest).as_posix()
        size, digest = _hash(out)
        os.chmod(out, 0o600)
        entries.append(_entry(out, rel, kind="file", bytes=size, sha256=digest))
        databases[name] = _database_kind(url)
        if progress:
            progress(rel, 0)
    live = {p for p in map(_sqlite_path, _database_urls(settings).values()) if p}
    for path in _walk(root, lambda p: _skip(p, settings, homes, live)):
        rel = "root/" + path.relative_to(root).as_posix()
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.is_symlink():
            link = os.readlink(path)
            if os.path.isabs(link) or not (path.parent / link).resolve().is_relative_to(root.resolve()):
                raise BackupError(f"{path} links outside the TRE root ({link}); fix or remove the link first")
            entries.append(_entry(path, rel, kind="link", target=link))
        elif path.is_dir():
            target.mkdir(exist_ok=True, mode=0o700)
            entries.append(_entry(path, rel, kind="dir"))
        elif path.is_file():
            size, digest = _copy_hashed(path, target, rel, progress)
            os.chmod(target, 0o600)  # the backup is private whatever the original's mode
            entries.append(_entry(path, rel, kind="file", bytes=size, sha256=digest))
    manifest = {
        "format": FORMAT,
        "created": utcnow().isoformat(),
        "root": str(root),
        "homes": homes,
        "databases": databases,
        "entries": [asdict(e) for e in entries],
    }
    tmp = dest / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.chmod(tmp, 0o600)
    os.replace(tmp, dest / MANIFEST)
    return manifest


# --- restore -------------------------------------------------------------------------------------------


def _safe_rel(rel: str) -> bool:
    p = PurePosixPath(rel)
    return not p.is_absolute() and ".." not in p.parts and p.parts[:1] in (("root",), ("databases",))


def read_manifest(backup_dir: Path) -> dict:
    try:
        manifest = json.loads((backup_dir / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupError(f"{backup_dir} has no {MANIFEST}: it is not a TRE backup") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"{backup_dir / MANIFEST} cannot be read ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(
            f"{backup_dir} is a backup of format {manifest.get('format')!r}; this TRE reads {FORMAT}"
        )
    return manifest


def verify(backup_dir: Path, progress: Progress | None = None) -> tuple[dict, list[str]]:
    """The manifest and every way the folder differs from it (empty: every byte as recorded)."""
    manifest = read_manifest(backup_dir)
    problems: list[str] = []
    listed: set[str] = set()
    for raw in manifest["entries"]:
        e = Entry(**raw)
        listed.add(e.path)
        if not _safe_rel(e.path):
            problems.append(f"{e.path}: a path outside the backup's layout")
            continue
        path = backup_dir / e.path
        if e.kind == "file":
            if path.is_symlink() or not path.is_file():
                problems.append(f"{e.path}: missing")
                continue
            size, digest = _hash(path)
            if (size, digest) != (e.bytes, e.sha256):
                problems.append(f"{e.path}: SHA-256 differs from the manifest")
            if progress:
                progress(e.path, size)
        elif e.kind == "link":
            resolved = os.path.normpath(PurePosixPath(e.path).parent / e.target)
            if os.path.isabs(e.target) or not _safe_rel(resolved):
                problems.append(f"{e.path}: links outside the TRE root")
        elif e.kind != "dir":
            problems.append(f"{e.path}: unknown kind {e.kind!r}")
    for path in backup_dir.rglob("*"):
        rel = path.relative_to(backup_dir).as_posix()
        if rel != MANIFEST and rel not in listed and not (path.is_dir() and not path.is_symlink()):
            problems.append(f"{rel}: not in the manifest")
    return manifest, problems


def restore(backup_dir: Path, settings: Settings, progress: Progress | None = None) -> dict:
    """Put the backup at `settings.root` (which must not hold a TRE), after checking every byte."""
    root = settings.root
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise BackupError(f"{root} is not empty; restore onto a fresh root (a new or empty folder)")
    manifest, problems = verify(backup_dir, progress)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise BackupError(f"the backup does not match its manifest, nothing was restored: {shown}")
    for name, kind in manifest["databases"].items():
        wanted = _database_kind(_database_urls(settings)[name])
        if wanted != kind:
            raise BackupError(
                f"the backup's {name} database is {kind} but this TRE is configured for {wanted} "
                "(TRE_DB_URL / TRE_HUB_DB_URL); configure the same kind and try again"
            )
    staging = root.with_name(f".{root.name}.restoring")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True, mode=0o755)
    entries = [Entry(**raw) for raw in manifest["entries"]]
    for e in entries:
        if not e.path.startswith("root/"):
            continue
        target = staging / e.path.removeprefix("root/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if e.kind == "dir":
            target.mkdir(exist_ok=True)
        elif e.kind == "link":
            os.symlink(e.target, target)
        else:
            shutil.copyfile(backup_dir / e.path, target)
        if e.kind != "link":
            os.chown(target, e.uid, e.gid)
            os.chmod(target, e.mode)
    # Directories were created before their modes were known to their children: set them last.
    for e in reversed(entries):
        if e.kind == "dir" and e.path.startswith("root/"):
            os.chmod(staging / e.path.removeprefix("root/"), e.mode)
    if root.exists():
        root.rmdir()
    os.replace(staging, root)
    for name, url in _database_urls(settings).items():
        _load_database(name, url, backup_dir)
    return manifest

"""Egress file storage: safe picking from a workspace, and content-addressed blobs.

Files are picked from a workspace through hub.host.homefiles (no link followed, no way out of the
home); only file types that may leave the TRE are taken.

Blobs live at blobs/sha256/ab/cdef...; they are written to a temporary file, fsynced and renamed
into place, so a crash never leaves a partial file under a content address.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from hub.host.homefiles import Refused, WorkspaceFile, check_relpath, open_home_file, walk_to_parent

__all__ = ["Refused", "WorkspaceFile", "check_relpath", "list_workspace", "open_workspace_file"]

CHUNK = 1024 * 1024
ALLOWED_SUFFIXES = frozenset(
    {
        "csv", "tsv", "txt", "md", "json", "parquet", "png", "jpg", "jpeg", "svg",
        "html", "ipynb", "py", "r", "sql", "log", "pdf",
    }
)  # fmt: skip


def suffix_of(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


@contextlib.contextmanager
def open_workspace_file(home: Path, relpath: str, max_bytes: int) -> Iterator[WorkspaceFile]:
    """Open a regular file of the workspace for reading, or raise Refused saying why not."""
    name = check_relpath(relpath)[-1]
    if suffix_of(name) not in ALLOWED_SUFFIXES:
        allowed = ", ".join(sorted(ALLOWED_SUFFIXES))
        shown = "/".join(check_relpath(relpath))
        raise Refused(f"'{shown}' has a file type that cannot leave the TRE; allowed types: {allowed}.")
    with open_home_file(home, relpath, max_bytes) as wsf:
        yield wsf


@dataclass(frozen=True)
class Entry:
    name: str
    relpath: str
    kind: str  # "dir" | "file" | "refused"
    size: int
    note: str = ""


def list_workspace(home: Path, reldir: str = "") -> list[Entry]:
    """The entries of one workspace folder for the file picker; links and special files are shown
    as refused so the researcher sees why they cannot be picked."""
    parts = check_relpath(reldir + "/x") if reldir else ("x",)
    prefix = "/".join(parts[:-1])
    out: list[Entry] = []
    with walk_to_parent(home, parts) as dfd:
        for name in sorted(os.listdir(dfd)):
            rel = f"{prefix}/{name}" if prefix else name
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                out.append(Entry(name, rel, "refused", 0, "symbolic link"))
            elif stat.S_ISDIR(st.st_mode):
                out.append(Entry(name, rel, "dir", 0))
            elif not stat.S_ISREG(st.st_mode):
                out.append(Entry(name, rel, "refused", 0, "special file"))
            elif suffix_of(name) not in ALLOWED_SUFFIXES:
                out.append(Entry(name, rel, "refused", st.st_size, "file type not allowed"))
            else:
                out.append(Entry(name, rel, "file", st.st_size))
    return out


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """Content-addressed, immutable files: what checkers review is byte-for-byte what is released."""

    def __init__(self, egress_dir: Path):
        self.root = egress_dir / "blobs" / "sha256"
        self.tmp = egress_dir / "blobs" / "tmp"

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / sha256[:2] / sha256[2:]

    def clean_temporary(self) -> int:
        """Remove half-written files left by a crash; call on start-up before serving."""
        removed = 0
        if self.tmp.is_dir():
            for p in self.tmp.iterdir():
                p.unlink(missing_ok=True)
                removed += 1
        return removed

    def put_fd(self, fd: int, max_bytes: int) -> tuple[str, int]:
        """Copy from an open descriptor into the store; returns (sha256, size)."""

        def chunks() -> Iterator[bytes]:
            offset = 0
            while chunk := os.pread(fd, CHUNK, offset):
                offset += len(chunk)
                yield chunk

        return self._store(chunks(), max_bytes)

    def put_bytes(self, data: bytes) -> str:
        return self._store(iter([data]), len(data))[0]

    def _store(self, chunks: Iterator[bytes], max_bytes: int) -> tuple[str, int]:
        self.tmp.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp / secrets.token_hex(12)
        digest = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "xb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:  # the file grew after its size was checked
                        raise Refused(f"The file is larger than the limit of {max_bytes:,} bytes.")
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha = digest.hexdigest()
            final = self.path(sha)
            final.parent.mkdir(parents=True, exist_ok=True)
            if not final.exists():
                os.chmod(tmp, 0o440)
                os.replace(tmp, final)
                fsync_dir(final.parent)
            return sha, size
        finally:
            tmp.unlink(missing_ok=True)

    def open(self, sha256: str) -> BinaryIO:
        return open(self.path(sha256), "rb")

    def read(self, sha256: str, limit: int | None = None) -> bytes:
        with self.open(sha256) as fh:
            return fh.read() if limit is None else fh.read(limit)

    def verify(self, sha256: str) -> bool:
        """Re-hash a blob: True only if it exists and its bytes still match its address."""
        digest = hashlib.sha256()
        try:
            with self.open(sha256) as fh:
                while chunk := fh.read(CHUNK):
                    digest.update(chunk)
        except FileNotFoundError:
            return False
        return digest.hexdigest() == sha256

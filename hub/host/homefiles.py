"""Reading a researcher's home from the host: a path she gives is hostile until proven otherwise.

Files are opened one path component at a time relative to a directory descriptor with O_NOFOLLOW,
so no symlink anywhere on the path (a link to /data is the classic escape) and no `..` can lead
outside the home, even if she swaps things while we look. Used by the egress service (picking
outputs) and by jobs (the notebook a job runs is copied from the home this way).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MAX_PATH_PARTS = 32


class Refused(Exception):
    """A file we will not take; the message tells the researcher why and what to do."""


def _link_refused(shown: str) -> str:
    return f"'{shown}' is a symbolic link; links are refused, copy the file into your workspace."


def check_relpath(relpath: str) -> tuple[str, ...]:
    """Split a workspace-relative path, refusing anything that could point outside the workspace."""
    if not relpath or "\x00" in relpath:
        raise Refused("Give the path of a file inside your workspace.")
    if relpath.startswith("/") or relpath.startswith("\\"):
        raise Refused(f"'{relpath}' is outside your workspace; give a path relative to your home folder.")
    parts = PurePosixPath(relpath).parts
    if ".." in relpath.replace("\\", "/").split("/"):
        raise Refused(f"'{relpath}' contains '..'; give a path inside your workspace.")
    parts = tuple(p for p in parts if p not in ("", "."))
    if not parts or len(parts) > MAX_PATH_PARTS:
        raise Refused(f"'{relpath}' is not a file path inside your workspace.")
    return parts


def _open_dir_nofollow(name: str, dir_fd: int | None, shown: str) -> int:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise Refused(f"'{shown}' does not exist in your workspace.") from None
    if stat.S_ISLNK(st.st_mode):
        raise Refused(_link_refused(shown))
    if not stat.S_ISDIR(st.st_mode):
        raise Refused(f"'{shown}' is not a folder.")
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:  # swapped for a link between stat and open
        raise Refused(f"'{shown}' changed while being opened; try again.") from exc


@contextlib.contextmanager
def walk_to_parent(home: Path, parts: tuple[str, ...]) -> Iterator[int]:
    """A descriptor of the folder holding the last part, reached without following any link."""
    fds = [_open_dir_nofollow(str(home), None, "your workspace")]
    try:
        for i, part in enumerate(parts[:-1]):
            fds.append(_open_dir_nofollow(part, fds[-1], "/".join(parts[: i + 1])))
        yield fds[-1]
    finally:
        for fd in fds:
            os.close(fd)


@dataclass(frozen=True)
class WorkspaceFile:
    fd: int
    relpath: str
    size: int
    mtime: float


@contextlib.contextmanager
def open_home_file(home: Path, relpath: str, max_bytes: int) -> Iterator[WorkspaceFile]:
    """Open a regular file of the workspace for reading, or raise Refused saying why not."""
    parts = check_relpath(relpath)
    shown = "/".join(parts)
    name = parts[-1]
    with walk_to_parent(home, parts) as parent:
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            raise Refused(f"'{shown}' does not exist in your workspace.") from None
        if stat.S_ISLNK(st.st_mode):
            raise Refused(
                f"'{shown}' is a symbolic link; links are refused, copy the file into your workspace."
            )
        if not stat.S_ISREG(st.st_mode):
            raise Refused(f"'{shown}' is not a regular file (device, pipe, socket or folder).")
        try:
            # O_NONBLOCK: a FIFO swapped in after the stat must not hang us.
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
            fd = os.open(name, flags, dir_fd=parent)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise Refused(f"'{shown}' is a symbolic link; links are refused.") from None
            raise Refused(f"'{shown}' cannot be read: {exc.strerror}.") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise Refused(f"'{shown}' is not a regular file (device, pipe, socket or folder).")
            if st.st_nlink > 1:
                raise Refused(f"'{shown}' is a hard link to another file; copy it into a new file first.")
            if st.st_size > max_bytes:
                raise Refused(f"'{shown}' is {st.st_size:,} bytes; the limit is {max_bytes:,} bytes.")
            yield WorkspaceFile(fd, shown, st.st_size, st.st_mtime)
        finally:
            os.close(fd)

"""Processes that never outlive the process that started them.

JupyterHub starts its managed services (egress, guard, sweeper, idle culler) in sessions of their
own, so a hub killed with SIGKILL used to leave them running, holding their ports: the next hub's
services could not bind and every egress login failed. Each service therefore asks the kernel for
SIGTERM the moment its parent dies (Linux `PR_SET_PDEATHSIG`), and `tre hub` does the same for the
hub it supervises.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Receive `sig` when the parent process dies; exit at once if it is already gone.

    Call it after any change of user or group: the kernel clears the setting on credential changes.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    # The parent died before the request took effect, or even before this call (an orphan's parent is
    # init, pid 1: no TRE process is started by init): nobody will signal us.
    if parent == 1 or os.getppid() != parent:
        raise SystemExit("the process that started this one is gone; exiting")


def process_identity(pid: int) -> str | None:
    """A live process as "<pid>:<start time in clock ticks since boot>", which a reused pid does not
    match; None once it is gone (or a zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else f"{pid}:{fields[19]}"  # fields[19]: starttime

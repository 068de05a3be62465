"""`tre hub` keeps JupyterHub running: it refuses to start on ports that are taken, restarts a hub
that dies, and on stop leaves nothing of its own behind.

What survives a hub restart, and why:
- workspaces and their kernels: the hub does not stop servers when it stops (`cleanup_servers` is
  off) and finds them again in its database when it starts;
- nothing else: the managed services (egress, guard, sweeper, idle culler) die with the hub that
  started them (hub.kernel.lifecycle), and the supervisor stops a dead hub's proxy (the process in
  `state/proxy.pid`) before the next start, so no orphan holds a port the next start needs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hub.kernel.lifecycle import die_with_parent
from hub.kernel.settings import Settings

QUICK_EXIT_SECONDS = 30  # a hub that dies sooner than this after starting is failing, not crashing
QUICK_EXITS_ALLOWED = 3
RESTART_DELAY_SECONDS = 1.0
STOP_TIMEOUT_SECONDS = 60
PROXY_PID_FILE = "proxy.pid"


@dataclass(frozen=True)
class Port:
    what: str
    host: str
    port: int
    setting: str


def ports(settings: Settings, hub_ip: str) -> list[Port]:
    """Every listening socket `tre hub` and the processes it starts will open."""
    found = [
        Port("public https", settings.public_ip, settings.public_port, "TRE_PUBLIC_PORT"),
        Port("proxy API", "127.0.0.1", settings.proxy_api_port, "TRE_PROXY_API_PORT"),
        Port("hub API", hub_ip, settings.hub_port, "TRE_HUB_PORT"),
        Port("egress service", "127.0.0.1", settings.egress_port, "TRE_EGRESS_PORT"),
        Port("guard", "127.0.0.1", settings.guard_port, "TRE_GUARD_PORT"),
    ]
    if settings.http_port:
        found.append(Port("http redirect", settings.public_ip, settings.http_port, "TRE_HTTP_PORT"))
    return found


def _in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "in use"
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _holder(port: int) -> str:
    """Who listens on a port, as `ss` names it ("" when it cannot tell)."""
    try:
        out = subprocess.run(
            ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    marker = 'users:(("'
    if marker not in out:
        return ""
    name, _, rest = out.split(marker, 1)[1].partition('"')
    pid = rest.split("pid=", 1)[1].split(",", 1)[0] if "pid=" in rest else "?"
    return f"{name} (pid {pid})"


def ports_in_use(settings: Settings, hub_ip: str) -> list[str]:
    """One line per port that another process already holds, saying what to do about it."""
    problems = []
    for p in ports(settings, hub_ip):
        if _in_use(p.host, p.port):
            holder = _holder(p.port)
            problems.append(
                f"the {p.what} port {p.host}:{p.port} is in use"
                + (f" by {holder}" if holder else "")
                + f": stop that process (an earlier `tre hub`?) or set {p.setting}"
            )
    return problems


def stop_leftover_proxy(state_dir: Path) -> int | None:
    """SIGTERM the proxy a hub started, if it is still running (a hub killed with SIGKILL leaves it)."""
    pid_file = state_dir / PROXY_PID_FILE
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    if b"configurable-http-proxy" not in cmdline:
        return None  # the pid was reused by something else: not ours to stop
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    return pid


class Supervisor:
    """Run `argv` (JupyterHub) until told to stop; start it again whenever it exits by itself."""

    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        state_dir: Path,
        say: Callable[[str], None] = print,
    ) -> None:
        self.argv, self.env, self.state_dir, self.say = list(argv), env, state_dir, say
        self.child: subprocess.Popen[bytes] | None = None
        self._stopping = False

    def _on_stop_signal(self, signum: int, _frame: object) -> None:
        self._stopping = True

    def _start_child(self) -> subprocess.Popen[bytes]:
        # The hub dies with its supervisor (a `kill -9` of `tre hub` ends it gracefully: SIGTERM).
        return subprocess.Popen(self.argv, env=self.env, cwd=self.state_dir, preexec_fn=die_with_parent)

    def _stop_child(self) -> None:
        child = self.child
        if child is None or child.poll() is not None:
            return
        child.send_signal(signal.SIGTERM)  # JupyterHub stops the proxy and its services itself
        try:
            child.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.say(f"the hub did not stop within {STOP_TIMEOUT_SECONDS}s; killing it")
            child.kill()
            child.wait()

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_stop_signal)
        quick_exits = 0
        try:
            while not self._stopping:
                started = time.monotonic()
                self.child = self._start_child()
                while not self._stopping and self.child.poll() is None:
                    time.sleep(0.2)
                if self._stopping:
                    break
                code = self.child.returncode
                lived = time.monotonic() - started
                quick_exits = quick_exits + 1 if lived < QUICK_EXIT_SECONDS else 0
                if quick_exits >= QUICK_EXITS_ALLOWED:
                    self.say(
                        f"the hub exited {quick_exits} times within {QUICK_EXIT_SECONDS}s of starting "
                        f"(last status {code}); giving up: see its log above"
                    )
                    return 1
                self.say(f"the hub exited with status {code} after {lived:.0f}s; starting it again")
                # The next hub would stop its predecessor's proxy itself, but only after waiting 2 s
                # for it: stopped now, the proxy is gone within the restart delay.
                stop_leftover_proxy(self.state_dir)
                time.sleep(RESTART_DELAY_SECONDS)
            return 0
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop short
            self._stop_child()
            stop_leftover_proxy(self.state_dir)

"""A sealed notebook run: researcher code run outside the researcher's control.

`run_notebook()` is what the egress service re-runs a request's notebook with; the job runner
(hub.jobs) uses `start_sealed`/`wait_sealed` itself. A sealed run has the workspace's image, uid,
limits and hardening (hub.host.hardening), the project's release read-only at /data, a scratch home
that holds only the files it was given, and no network at all: a container with no network on this
host's engine, or on a swarm a job service on the sealed network, which the firewall cuts off. She
cannot change what it runs or what it reports.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import docker
import docker.errors
import requests.exceptions

from hub.host import swarm
from hub.host.hardening import HOME, WORKSPACE_GID, WORKSPACE_UID, hardened_service, hardening

EXECUTED = ".tre-rerun/executed.ipynb"  # papermill's output, inside the scratch home
SEALED_ENV = {"HOME": HOME, "TRE_DATA_DIR": "/data"}
LOG_LIMIT = 200_000  # characters of a run's log kept (its end)
HOME_LIMIT = 1 << 30  # bytes a run may write into its home before it is stopped
FILE_LIMIT = 100 << 20  # largest file read back from a run's home
POLL_SECONDS = 0.5
CANCEL_POLL_SECONDS = 2.0


class SealedRunError(RuntimeError):
    """The run could not be made (not: the notebook failed, which is a result)."""


@dataclass
class RunResult:
    exit_code: int | None  # None: stopped at the time limit
    seconds: float
    log: str
    files: dict[str, bytes] = field(default_factory=dict)  # what the run left in its home, by path
    executed: bytes | None = None  # the executed notebook

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def _safe_relpath(relpath: str) -> PurePosixPath:
    path = PurePosixPath(relpath)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise SealedRunError(f"{relpath!r} is not a path inside the home")
    return path


def run_notebook(
    image: str,
    release_dir: Path,
    inputs: dict[str, bytes],
    notebook: str,
    scratch: Path,
    *,
    parameters: dict[str, Any] | None = None,
    timeout: float = 600,
    mem: str = "2G",
    cpus: float = 1.0,
    pids: int = 256,
    labels: dict[str, str] | None = None,
    collect: set[str] | None = None,
    home_limit: int = HOME_LIMIT,
    file_limit: int = FILE_LIMIT,
    cancelled: Callable[[], str] | None = None,
    swarm_network: str | None = None,
) -> RunResult:
    """Execute `notebook` (one of `inputs`) with papermill in a sealed container; collect its files.

    Only the files named in `collect` (all, when None) are read back, each up to `file_limit` bytes;
    a run that writes more than `home_limit` bytes into its home is stopped (the home is on the
    host's disk, and the code is the researcher's). `cancelled()`, asked every few seconds, stops the
    run when it returns a reason."""
    if notebook not in inputs:
        raise SealedRunError(f"the notebook {notebook} is not among the files given to the run")
    home = scratch / "home"
    home.mkdir(parents=True, mode=0o700)
    for relpath, data in inputs.items():
        target = home / _safe_relpath(relpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (home / EXECUTED).parent.mkdir(exist_ok=True)
    for path in [home, *home.rglob("*")]:
        os.chown(path, WORKSPACE_UID, WORKSPACE_GID)
    nb = _safe_relpath(notebook)
    command = papermill_command(str(nb), EXECUTED, str(PurePosixPath(HOME) / nb.parent), parameters)
    started = time.monotonic()
    container = start_sealed(
        image,
        [
            docker.types.Mount("/data", str(release_dir), type="bind", read_only=True),
            docker.types.Mount(HOME, str(home), type="bind", read_only=False),
        ],
        command,
        mem=mem,
        cpus=cpus,
        pids=pids,
        labels=labels or {},
        swarm_network=swarm_network,
    )
    deadline = started + timeout
    next_ask = started

    def reason_to_stop() -> str:
        nonlocal next_ask
        if time.monotonic() > deadline:
            return f"the run took longer than its limit of {timeout:.0f} s"
        if _size(home) > home_limit:
            return f"the run wrote more than {home_limit:,} bytes into its home"
        if cancelled is not None and time.monotonic() >= next_ask:
            next_ask = time.monotonic() + CANCEL_POLL_SECONDS
            return cancelled()
        return ""

    try:
        exit_code, stopped = wait_sealed(container, reason_to_stop)
        log = container.logs()[-LOG_LIMIT:]
    finally:
        container.remove()
    seconds = time.monotonic() - started
    # The container is gone, so nothing can swap a path while we read; and only regular files found
    # without following a link are read: a link the run left (to a host path) is never followed.
    found = _regular_files(home)
    executed = _read(found[EXECUTED], file_limit) if EXECUTED in found else None
    files = {}
    for rel, path in sorted(found.items()):
        if rel.startswith(".tre-rerun/") or (collect is not None and rel not in collect):
            continue
        data = _read(path, file_limit)
        if data is None:
            log += f"\n[{rel} is larger than {file_limit:,} bytes: not read back]"
        else:
            files[rel] = data
    shutil.rmtree(scratch, ignore_errors=True)
    if stopped:
        exit_code = None
        log += f"\n[stopped: {stopped}]"
    return RunResult(exit_code, seconds, log, files, executed)


def papermill_command(
    notebook: str, output: str, cwd: str, parameters: dict[str, Any] | None = None, *, log: bool = False
) -> list[str]:
    """papermill's command line; each parameter is passed as YAML (a superset of JSON: types kept)."""
    command = ["papermill", "--no-progress-bar", *(["--log-output"] if log else []), "--cwd", cwd]
    command += [notebook, output]
    for name, value in (parameters or {}).items():
        command += ["-y", json.dumps({name: value})]
    return command


class Sealed(Protocol):
    """A started sealed run, on either engine."""

    def wait(self, timeout: float) -> int | None:
        """Its exit code once it ended, or None if it still runs after `timeout` seconds."""

    def kill(self) -> None: ...

    def logs(self, tail: int | None = None) -> str: ...

    def remove(self) -> None: ...


@dataclass
class SealedContainer:
    """A sealed run as a container on this host's Docker engine."""

    container: Any

    def wait(self, timeout: float) -> int | None:
        try:
            return int(self.container.wait(timeout=timeout)["StatusCode"])
        except (requests.exceptions.ConnectionError, requests.exceptions.ReadTimeout):
            return None

    def kill(self) -> None:
        with contextlib.suppress(docker.errors.APIError):
            self.container.kill()

    def logs(self, tail: int | None = None) -> str:
        return self.container.logs(stdout=True, stderr=True, tail=tail or "all").decode(errors="replace")

    def remove(self) -> None:
        self.container.remove(force=True)


def start_sealed(
    image: str,
    mounts: list[docker.types.Mount],
    command: list[str],
    *,
    mem: str,
    cpus: float,
    pids: int,
    labels: dict[str, str],
    name: str | None = None,
    swarm_network: str | None = None,
) -> Sealed:
    """Start a run with the workspace's hardening and uid and no network at all: a detached
    container, or on a swarm (hub.host.swarm.sealed_runs_on) a one-task job service on the sealed
    network, which reaches nothing."""
    client = docker.from_env(timeout=30)
    if swarm_network:
        spec = hardened_service(
            name or f"tre-sealed-{secrets.token_hex(6)}",
            image,
            mounts,
            network=swarm_network,
            mem=mem,
            cpus=cpus,
            pids=pids,
            labels=labels,
            args=command,
            job=True,
        )
        spec["task_template"]["ContainerSpec"]["Env"] = [f"{k}={v}" for k, v in SEALED_ENV.items()]
        try:
            return swarm.SealedTask.start(client, spec)
        except swarm.SwarmError as exc:
            raise SealedRunError(f"the run could not start: {exc}") from exc
    try:
        container = client.containers.run(
            image,
            command,
            name=name,
            detach=True,
            user=f"{WORKSPACE_UID}:{WORKSPACE_GID}",
            working_dir=HOME,
            mounts=mounts,
            mem_limit=mem,
            nano_cpus=int(cpus * 1e9),
            labels=labels,
            environment=SEALED_ENV,
            **hardening(mem, pids, "none"),
        )
    except docker.errors.DockerException as exc:
        raise SealedRunError(f"the container could not start: {exc}") from exc
    return SealedContainer(container)


def find_sealed(name: str, on_swarm: bool = False) -> Sealed | None:
    """A run started earlier under `name` (a job a restarted runner adopts), if it still exists."""
    client = docker.from_env(timeout=30)
    if on_swarm:
        return swarm.SealedTask.find(client, name)
    try:
        return SealedContainer(client.containers.get(name))
    except docker.errors.NotFound:
        return None


def wait_sealed(run: Sealed, reason_to_stop: Callable[[], str]) -> tuple[int | None, str]:
    """Wait for the run to end; kill it as soon as `reason_to_stop()` gives a reason.

    Returns (exit code, "") or (None, the reason it was stopped)."""
    while True:
        code = run.wait(POLL_SECONDS)
        if code is not None:
            return code, ""
        if stopped := reason_to_stop():
            run.kill()
            return None, stopped


def _read(path: Path, limit: int) -> bytes | None:
    """A regular file's bytes (never through a link the run made), or None when absent or too large."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode) or os.fstat(fd).st_size > limit:
            return None
        return fh.read(limit + 1)[:limit]


def _regular_files(home: Path) -> dict[str, Path]:
    found = {}
    for folder, _, names in os.walk(home):  # os.walk does not descend into linked folders
        for name in names:
            path = Path(folder) / name
            if stat.S_ISREG(path.lstat().st_mode):
                found[path.relative_to(home).as_posix()] = path
    return found


def _size(folder: Path) -> int:
    total = 0
    for current, _, names in os.walk(folder):
        for name in names:
            try:
                total += (Path(current) / name).lstat().st_blocks * 512
            except OSError:
                continue
    return total

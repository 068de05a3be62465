"""The hardening every container a researcher's code runs in gets, and a sealed notebook run.

`hardening()` is the one definition of that hardening: the spawner applies it to workspaces, and
`run_notebook()` to the re-runs the egress service makes of a request's notebook. A sealed run has
the workspace's image, uid and limits, the project's release read-only at /data, a scratch home that
holds only the files it was given, and no network at all (not even the workspace network). It runs
on the host, outside the researcher's control: she cannot change what it runs or what it reports.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import docker
import docker.errors
import requests.exceptions

WORKSPACE_UID = 1000
WORKSPACE_GID = 1000
HOME = "/home/jovyan"
EXECUTED = ".tre-rerun/executed.ipynb"  # papermill's output, inside the scratch home
LOG_LIMIT = 200_000  # characters of a run's log kept (its end)


def hardening(mem: str, pids: int, network: str, tmp_size: str = "64m") -> dict[str, Any]:
    """Docker host configuration for a container running researcher code (docker-py's names)."""
    return {
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,noexec,nosuid,nodev,size={tmp_size}"},  # noqa: S108 - in the container
        "pids_limit": int(pids),
        # No swap beyond the memory limit: the limit is the limit.
        "memswap_limit": mem,
        "sysctls": {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"},
        "network_mode": network,
        "init": True,
        "ipc_mode": "private",
    }


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
) -> RunResult:
    """Execute `notebook` (one of `inputs`) with papermill in a sealed container; collect its files."""
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
    command = [
        "papermill",
        "--no-progress-bar",
        "--cwd",
        str(PurePosixPath(HOME) / nb.parent),
        str(nb),
        EXECUTED,
    ]
    for name, value in (parameters or {}).items():
        command += ["-y", json.dumps({name: value})]  # YAML is a superset of JSON: values keep their types
    client = docker.from_env(timeout=30)
    started = time.monotonic()
    try:
        container = client.containers.run(
            image,
            command,
            detach=True,
            user=f"{WORKSPACE_UID}:{WORKSPACE_GID}",
            working_dir=HOME,
            mounts=[
                docker.types.Mount("/data", str(release_dir), type="bind", read_only=True),
                docker.types.Mount(HOME, str(home), type="bind", read_only=False),
            ],
            mem_limit=mem,
            nano_cpus=int(cpus * 1e9),
            labels=labels or {},
            environment={"HOME": HOME, "TRE_DATA_DIR": "/data"},
            **hardening(mem, pids, "none"),
        )
    except docker.errors.DockerException as exc:
        raise SealedRunError(f"the re-run container could not start: {exc}") from exc
    exit_code: int | None
    try:
        try:
            exit_code = int(container.wait(timeout=timeout)["StatusCode"])
        except (requests.exceptions.ConnectionError, requests.exceptions.ReadTimeout):
            container.kill()
            exit_code = None
        log = container.logs(stdout=True, stderr=True).decode(errors="replace")[-LOG_LIMIT:]
    finally:
        container.remove(force=True)
    seconds = time.monotonic() - started
    executed_path = home / EXECUTED
    executed = executed_path.read_bytes() if executed_path.is_file() else None
    files = {
        p.relative_to(home).as_posix(): p.read_bytes()
        for p in sorted(home.rglob("*"))
        if p.is_file() and not p.is_symlink() and not p.relative_to(home).as_posix().startswith(".tre-rerun/")
    }
    shutil.rmtree(scratch, ignore_errors=True)
    if exit_code is None:
        log += f"\n[stopped: the run took longer than its limit of {timeout:.0f} s]"
    return RunResult(exit_code, seconds, log, files, executed)

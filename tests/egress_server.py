"""Start and kill the egress test server (tests.egress_testserver) as a real uvicorn subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
BASE = "/services/egress"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, root: Path, env: dict[str, str] | None = None, workers: int = 1):
        self.root = root
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{BASE}"
        self.env = {**os.environ, "TRE_ROOT": str(root), **(env or {})}
        self.env.pop("TRE_DB_URL", None)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> Server:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.egress_testserver", str(self.port), str(self.workers)],
            cwd=REPO, env=self.env, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"egress test server exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/api/openapi.json", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError("egress test server did not start")

    def kill9(self) -> None:
        """SIGKILL, no clean-up: what a power cut or the OOM killer does to the process."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill9()

    def client(self, user: str, timeout: float = 30) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"X-Test-User": user, "X-Test-Via": "token"}, timeout=timeout
        )

"""The egress app as a real uvicorn subprocess with test identities (tests and benchmarks only).

`Server(root).start()` runs `python -m tests.egress_server PORT [WORKERS]`, which serves the app with
the identity taken from an X-Test-User header: a FastAPI dependency override installed here, in this
test-only process; the production entry point (`python -m egress`) has no way to load it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from egress.web.app import create_app
from hub.kernel.settings import get_settings
from hub.web.sso import current_identity
from tests.fixtures_egress import injected_identity
from tests.fixtures_hub import free_port

REPO = Path(__file__).resolve().parent.parent
BASE = "/services/egress"


def app_factory() -> FastAPI:
    app = create_app(get_settings(), prefix="/services/egress/", sso=False)
    app.dependency_overrides[current_identity] = injected_identity
    return app


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
            [sys.executable, "-m", "tests.egress_server", str(self.port), str(self.workers)],
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


def main() -> None:
    port = int(sys.argv[1])
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    uvicorn.run(
        "tests.egress_server:app_factory",
        factory=True,
        host="127.0.0.1",
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()

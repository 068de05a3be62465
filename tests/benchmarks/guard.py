"""The guard's cost, measured through the guard and straight to the container in one run.

On a real hub (needs root, Docker and the notebook image), one workspace:
  cell         round trip of a tiny cell (execute_request -> execute_reply, v1 websocket protocol),
               N times each way, interleaved: median and p99
  notebook     opening a 1 MB notebook (GET api/contents), median of N each way
  streaming    20 kernels printing at once through the guard: the guard's CPU (utime + stime from
               /proc) over the streaming window, as a share of one core

"Straight to the container" is what the guard itself does: this process takes the guard's group
(the host firewall lets nothing else reach a workspace) and talks to the server's address.
Targets: cell median <= 1.15x and p99 <= 1.3x direct, notebook <= 1.2x direct, guard CPU <= 10%
of one core for 20 streaming kernels. Human lines first, then one JSON object on the last line.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hub.guard import kernel_wire as wire
from hub.host.network import guard_gid
from tests.fixtures_hub import Hub, docker_inspect, own_workspace, start_hub
from tests.fixtures_kernel import HANDSHAKE_SECONDS

CELLS = 300
OPENS = 30
KERNELS = 20
STREAM_SECONDS = 20
TARGETS = {"cell_median_ratio": 1.15, "cell_p99_ratio": 1.3, "notebook_ratio": 1.2, "guard_cpu_share": 0.10}


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * len(ordered)))]


def execute_request(code: str) -> wire.Message:
    header = {"msg_id": uuid.uuid4().hex, "msg_type": "execute_request", "session": "bench", "version": "5.3"}
    content = {
        "code": code,
        "silent": False,
        "store_history": False,
        "user_expressions": {},
        "allow_stdin": False,
    }
    return wire.Message("shell", header, {}, content)


class Kernel:
    """A kernel's v1 websocket at `base` (the guard's address or the container's)."""

    def __init__(self, base: str, token: str, kernel_id: str) -> None:
        url = base.replace("http://", "ws://") + f"api/kernels/{kernel_id}/channels"
        auth = {"Authorization": f"token {token}"}
        self.ws = connect(
            url,
            subprotocols=[wire.V1],
            additional_headers=auth,
            max_size=None,
            open_timeout=HANDSHAKE_SECONDS,
        )

    def run(self, code: str) -> float:
        msg = execute_request(code)
        t0 = time.perf_counter()
        self.ws.send(wire.serialize(msg, wire.V1))
        while True:
            reply = wire.parse(self.ws.recv(timeout=120), wire.V1)
            if (
                reply.msg_type == "execute_reply"
                and reply.parent_header.get("msg_id") == msg.header["msg_id"]
            ):
                return time.perf_counter() - t0

    def close(self) -> None:
        self.ws.close()


def guard_pid(hub: Hub) -> int:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd, env = (proc / "cmdline").read_bytes(), (proc / "environ").read_bytes()
            except OSError:
                continue
            if b"hub.guard" in cmd and f"TRE_GUARD_PORT={hub.settings.guard_port}".encode() in env:
                return int(proc.name)
    raise RuntimeError("the guard is not running")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def notebook_of(size: int) -> str:
    cell = {
        "cell_type": "code",
        "source": "x = 1",
        "metadata": {},
        "execution_count": 1,
        "outputs": [{"output_type": "stream", "name": "stdout", "text": "y" * 1000 + "\n"}],
    }
    cells = [cell] * (size // 1100)
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from hub.kernel.settings import get_settings

    image = get_settings().image
    root = Path(tempfile.mkdtemp(prefix="tre-bench-guard-")) / "tre"
    root.mkdir()
    hub_gen = start_hub(root, image)
    hub = next(hub_gen)
    try:
        user, project, _ = own_workspace(
            hub, "bench", start=False, daily_bytes=10**11, read_bytes=4_000_000, mem="6g", cpu=2.0, pids=2048
        )
        hub.start(user, project)
        token = hub.user_token(user)
        settings = hub.settings
        networks = docker_inspect(hub.container(user, project))["NetworkSettings"]["Networks"]
        ip = networks[settings.network]["IPAddress"]
        os.setgroups([])
        os.setgid(guard_gid(settings))  # as the guard: the firewall lets this process reach the server
        prefix = f"/user/{user}/{project}/"
        ways = {
            "guard": f"http://127.0.0.1:{settings.guard_port}{prefix}",
            "direct": f"http://{ip}:8888{prefix}",
        }
        headers = {"Authorization": f"token {token}"}
        home = settings.home_dir(project, user)
        (home / "big.ipynb").write_text(notebook_of(1_000_000))
        os.chown(home / "big.ipynb", 1000, 1000)
        print(f"{os.cpu_count()} CPUs; notebook {(home / 'big.ipynb').stat().st_size} bytes")

        with httpx.Client(headers=headers, timeout=60) as client:
            kernel_id = client.post(ways["guard"] + "api/kernels", json={"name": "python3"}).json()["id"]
            kernels = {way: Kernel(base, token, kernel_id) for way, base in ways.items()}
            for k in kernels.values():  # warm up both paths
                for _ in range(20):
                    k.run("1")
            cell: dict[str, list[float]] = {"guard": [], "direct": []}
            for _ in range(CELLS):
                for way in ("guard", "direct"):
                    cell[way].append(kernels[way].run("1"))
            for k in kernels.values():
                k.close()
            opens: dict[str, list[float]] = {"guard": [], "direct": []}
            for _ in range(OPENS):
                for way, base in ways.items():
                    t0 = time.perf_counter()
                    r = client.get(base + "api/contents/big.ipynb")
                    assert r.status_code == 200, (way, r.status_code, r.text[:200])
                    opens[way].append(time.perf_counter() - t0)

            ids = [
                client.post(ways["guard"] + "api/kernels", json={"name": "python3"}).json()["id"]
                for _ in range(KERNELS)
            ]
            streams = [Kernel(ways["guard"], token, i) for i in ids]
            for k in streams:
                k.run("1")  # started and connected
            pid = guard_pid(hub)
            code = f"import time\nt = time.time()\nwhile time.time() - t < {STREAM_SECONDS}:\n"
            code += "    print('progress', time.time(), 'x' * 80)\n    time.sleep(0.01)\n"
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            threads = [threading.Thread(target=k.run, args=(code,)) for k in streams]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
            for k in streams:
                k.close()
    finally:
        for _ in hub_gen:
            pass

    result = {
        "cell_guard_median_ms": round(statistics.median(cell["guard"]) * 1000, 2),
        "cell_direct_median_ms": round(statistics.median(cell["direct"]) * 1000, 2),
        "cell_guard_p99_ms": round(p99(cell["guard"]) * 1000, 2),
        "cell_direct_p99_ms": round(p99(cell["direct"]) * 1000, 2),
        "notebook_guard_median_ms": round(statistics.median(opens["guard"]) * 1000, 1),
        "notebook_direct_median_ms": round(statistics.median(opens["direct"]) * 1000, 1),
        "streaming_kernels": KERNELS,
        "streaming_seconds": round(wall, 1),
        "guard_cpu_s": round(cpu, 2),
    }
    result["cell_median_ratio"] = round(result["cell_guard_median_ms"] / result["cell_direct_median_ms"], 3)
    result["cell_p99_ratio"] = round(result["cell_guard_p99_ms"] / result["cell_direct_p99_ms"], 3)
    result["notebook_ratio"] = round(
        result["notebook_guard_median_ms"] / result["notebook_direct_median_ms"], 3
    )
    result["guard_cpu_share"] = round(cpu / wall, 3)
    result["targets"] = TARGETS
    result["meets_targets"] = all(result[k] <= v for k, v in TARGETS.items())
    print(
        f"cell: guard {result['cell_guard_median_ms']} ms median / {result['cell_guard_p99_ms']} ms p99, "
        f"direct {result['cell_direct_median_ms']} / {result['cell_direct_p99_ms']} ms; "
        f"1 MB notebook: guard {result['notebook_guard_median_ms']} ms, "
        f"direct {result['notebook_direct_median_ms']} ms; "
        f"{KERNELS} streaming kernels: guard CPU {100 * result['guard_cpu_share']:.1f}% of a core"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

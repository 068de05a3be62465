"""A second Docker node on this machine, joined to the test swarm as a worker.

It is a second dockerd in a network namespace of its own (its own bridges, firewall and address,
reached over a veth pair), with its own data root and the TRE's image loaded into it: what a second
host is to the swarm, short of a second kernel and a second disk. The mount namespace is shared, so
its "shared storage" (the TRE root at the same path) is this machine's disk.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.fixtures_hub import create_gwbridge, docker_out, wait_until
from tests.fixtures_netns import enter, namespace_behind_veth

LINK = ipaddress.ip_network("10.250.0.0/30")  # the veth pair: .1 this host, .2 the node


@dataclass(frozen=True)
class Node:
    name: str  # its hostname, as the swarm lists it, and its network namespace's name
    socket: str
    address: str  # where this host reaches it
    node_id: str

    def run(self, cmd: list[str], env: dict[str, str] | None = None, timeout: float = 180) -> str:
        """`cmd` in the node's network namespace, talking to the node's engine; its output."""
        full_env = {**os.environ, **(env or {}), "DOCKER_HOST": f"unix://{self.socket}"}
        out = subprocess.run(
            [*enter(self.name), *cmd],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if out.returncode != 0:
            raise AssertionError(
                f"{cmd[:4]} on {self.name} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
            )
        return out.stdout

    def tre(self, args: list[str], env: dict[str, str]) -> str:
        """The `tre` command line on the node, with a hub's settings in `env`."""
        return self.run([str(Path(sys.executable).parent / "tre"), *args], env=env)


def _sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)


@contextlib.contextmanager
def second_node(image: str) -> Iterator[Node]:
    """Start the node, load `image` into it and join it to this engine's swarm; undo it all after."""
    with namespace_behind_veth("tre-node2", str(LINK)) as ns:
        name = ns.name
        data, run_dir = Path(f"/var/lib/{name}"), Path(f"/var/run/{name}")
        socket = str(run_dir / "docker.sock")
        docker = ["docker", "-H", f"unix://{socket}"]
        # The node talks only to this host: anything it would send further (a registry look-up when
        # a task starts, as Swarm tries before it falls back on the local image) is refused at once.
        reject = ["FORWARD", "-s", ns.address, "-j", "REJECT"]
        daemon: subprocess.Popen | None = None
        node_id = ""
        try:
            _sh("iptables", "-I", *reject)
            data.mkdir(parents=True)
            run_dir.mkdir(parents=True)
            log = open(run_dir / "dockerd.log", "w")  # noqa: SIM115 - the daemon writes it until the end
            daemon = subprocess.Popen(
                [
                    *enter(name), "unshare", "--uts", "sh", "-c",
                    f"hostname {name} && exec dockerd --data-root {data} --exec-root {run_dir}/exec "
                    f"-H unix://{socket} --pidfile {run_dir}/docker.pid --no-new-privileges "
                    f"--cgroup-parent /{name}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                wait_until(lambda: _sh(*docker, "info").returncode == 0, 60, "the second node's dockerd")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; its log ends:\n{Path(log.name).read_text()[-3000:]}") from None
            save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
            loaded = subprocess.run(
                [*docker, "load", "-q"], stdin=save.stdout, capture_output=True, timeout=300
            )
            save.wait(timeout=60)
            assert loaded.returncode == 0, loaded.stderr
            assert create_gwbridge(docker).returncode == 0
            manager = _sh("docker", "info", "-f", "{{.Swarm.NodeAddr}}").stdout.strip()
            token = _sh("docker", "swarm", "join-token", "-q", "worker").stdout.strip()
            _sh(*docker, "swarm", "join", "--advertise-addr", ns.address, "--token", token, f"{manager}:2377")
            node_id = _sh(*docker, "info", "-f", "{{.Swarm.NodeID}}").stdout.strip()
            wait_until(
                lambda: docker_out("node", "inspect", "-f", "{{.Status.State}}", node_id).strip() == "ready",
                60,
                "the second node ready in the swarm",
            )
            yield Node(name, socket, ns.address, node_id)
        finally:
            if daemon is not None:
                _sh(*docker, "swarm", "leave", "--force", check=False)
                if node_id:
                    _sh("docker", "node", "rm", "--force", node_id, check=False)
                for container in _sh(*docker, "ps", "-aq", check=False).stdout.split():
                    _sh(*docker, "rm", "-f", container, check=False)
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait(timeout=10)
            _sh("iptables", "-D", *reject, check=False)
            for mount in reversed(_sh("findmnt", "-rno", "TARGET", check=False).stdout.split()):
                if mount.startswith((str(data), str(run_dir))):
                    _sh("umount", "-l", mount, check=False)
            shutil.rmtree(data, ignore_errors=True)
            shutil.rmtree(run_dir, ignore_errors=True)

"""The controls that exist only on a swarm (TRE_ENGINE=swarm), attacked on a single-node swarm.

- A sealed run or job is a job service, and a service cannot have "no network": it gets the sealed
  network, whose bridge the host firewall cuts off entirely. Removing that rule must show a way out.
- no-new-privileges is each node's daemon setting there; the anchor service reports it from every
  node, and without the anchor (or its report) `tre network status` fails and no workspace starts.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.host import network, swarm
from hub.host.sealed import run_notebook
from tests.fixtures_kernel import notebook_bytes as notebook

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def host_port() -> Iterator[int]:
    """A listening socket on every host address (the kernel completes handshakes from its backlog)."""
    with socket.socket() as srv:
        srv.bind(("0.0.0.0", 0))  # noqa: S104 - the point: a service on every host address
        srv.listen(64)
        yield srv.getsockname()[1]


def _probe(hub, release: Path, scratch: Path, targets: list[tuple[str, int]]) -> list[str]:
    code = (
        "import json, socket\n"
        "def tcp(h, p):\n"
        "    try:\n        socket.create_connection((h, p), timeout=2).close(); return 'open'\n"
        "    except OSError as e:\n        return type(e).__name__\n"
        f"open('probe.json', 'w').write(json.dumps([tcp(h, p) for h, p in {targets!r}]))"
    )
    result = run_notebook(
        hub.settings.image,
        release,
        {"p.ipynb": notebook(code)},
        "p.ipynb",
        scratch,
        timeout=120,
        swarm_network=swarm.sealed_runs_on(hub.settings),
    )
    assert result.ok, result.log
    return json.loads(result.files["probe.json"])


def test_a_sealed_task_reaches_nothing_and_the_firewall_is_what_blocks(
    swarm_hub, empty_release, tmp_path, host_port
):
    settings = swarm_hub.settings
    sealed_gateway = str(next(ipaddress.ip_network(settings.sealed_subnet).hosts()))
    targets = [
        (sealed_gateway, host_port),  # the host, on the sealed bridge's own address
        (swarm_hub.gateway, settings.hub_port),  # the hub API, which workspaces may reach
        (swarm_hub.gateway, host_port),
        ("172.17.0.1", host_port),  # Docker's default bridge, where a service without networks lands
    ]
    results = _probe(swarm_hub, empty_release, tmp_path / "a", targets)
    assert "open" not in results, dict(zip(map(str, targets), results, strict=True))
    assert swarm_hub.api("GET", "/").status_code == 200  # control: the hub answers on that address
    plan = network.plan(settings)
    # Two rules each cut the host off: INPUT drops what the task sends, OUTPUT rejects the host's replies.
    rules = [
        ("INPUT", ["-i", plan.sealed_bridge, "-j", "DROP"]),
        ("OUTPUT", ["-o", plan.sealed_bridge, "-j", "REJECT"]),
    ]
    assert all(rule in plan.sealed_hooks() for rule in rules)
    for chain, rule in rules:
        subprocess.run(["iptables", "-w", "10", "-D", chain, *rule], check=True)
    try:
        assert not network.status(settings).ok
        # Without them the sealed task reaches host services: the rules are the control.
        assert _probe(swarm_hub, empty_release, tmp_path / "c", targets[:3]) == ["open"] * 3
        subprocess.run(["iptables", "-w", "10", "-I", "OUTPUT", "1", *rules[1][1]], check=True)
        assert _probe(swarm_hub, empty_release, tmp_path / "d", targets[:1]) != [
            "open"
        ]  # either one suffices
    finally:
        network.setup(settings)
    assert _probe(swarm_hub, empty_release, tmp_path / "e", targets[:1]) != ["open"]


def test_without_the_anchor_no_workspace_starts(swarm_hub):
    settings = swarm_hub.settings
    assert network.status(settings).ok  # control
    subprocess.run(
        ["docker", "service", "rm", swarm.anchor_service(settings)], check=True, capture_output=True
    )
    try:
        problems = network.status(settings).problems
        assert any("anchor service" in p for p in problems), problems
        r = swarm_hub.request_start("alice", "proj-c")
        assert r.status_code == 503 and "tre network setup" in r.json()["message"]
        assert not swarm_hub.workspace_exists("alice", "proj-c")
    finally:
        network.setup(settings)
    assert network.status(settings).ok
    swarm_hub.start("alice", "proj-c")  # control: with the anchor back, the same request works
    swarm_hub.stop("alice", "proj-c")

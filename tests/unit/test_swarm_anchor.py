"""How `tre network status` reads the anchor's per-node reports (hub.host.swarm), on canned answers
of the Docker API; the real anchor on a real swarm: tests/security/test_swarm_boundaries.py."""

from __future__ import annotations

from pathlib import Path

import docker.errors
import pytest

from hub.host import swarm
from hub.kernel.settings import Settings, SettingsError


class FakeApi:
    def __init__(self, nodes: dict[str, str], tasks: dict[str, str], logs: list[tuple[str, str, str]]):
        self._nodes, self._tasks, self._logs = nodes, tasks, logs
        self.service_exists = True

    def inspect_service(self, name: str) -> dict:
        if not self.service_exists:
            raise docker.errors.NotFound("no such service")
        return {}

    def nodes(self) -> list[dict]:
        return [
            {"ID": i, "Description": {"Hostname": h}, "Status": {"State": "ready"}}
            for i, h in self._nodes.items()
        ]

    def tasks(self, filters: dict) -> list[dict]:
        return [{"NodeID": n, "ID": t, "Status": {"State": "running"}} for n, t in self._tasks.items()]

    def service_logs(self, service: str, **kw) -> list[bytes]:
        details = "com.docker.swarm.node.id={},com.docker.swarm.service.id=s,com.docker.swarm.task.id={}"
        return [f"{details.format(n, t)} {text}\n".encode() for n, t, text in self._logs]


class FakeClient:
    def __init__(self, api: FakeApi) -> None:
        self.api = api


SETTINGS = Settings(root=Path("/nonexistent"), engine="swarm")


def test_every_node_reporting_no_new_privileges_passes():
    api = FakeApi(
        {"n1": "a", "n2": "b"},
        {"n1": "t1", "n2": "t2"},
        [("n1", "t1", "NoNewPrivs:\t1"), ("n2", "t2", "NoNewPrivs:\t1")],
    )
    assert swarm.anchor_problems(FakeClient(api), SETTINGS) == []


def test_a_node_without_the_daemon_setting_or_without_an_anchor_is_named():
    api = FakeApi(
        {"n1": "node-a", "n2": "node-b", "n3": "node-c"},
        {"n1": "t1", "n2": "t2"},
        [("n1", "t1", "NoNewPrivs:\t0"), ("n2", "t2", "NoNewPrivs:\t1")],
    )
    problems = swarm.anchor_problems(FakeClient(api), SETTINGS)
    assert len(problems) == 2
    assert problems[0].startswith("node node-a: its Docker daemon does not set no-new-privileges")
    assert problems[1] == "node node-c: no anchor task running on the workspace network"


def test_one_node_can_be_checked_alone_as_its_own_setup_does():
    # node-a is set up and reports; node-c joined and has no anchor task yet.
    api = FakeApi({"n1": "node-a", "n3": "node-c"}, {"n1": "t1"}, [("n1", "t1", "NoNewPrivs:\t1")])
    assert swarm.anchor_problems(FakeClient(api), SETTINGS, only_node="n1") == []
    assert swarm.anchor_problems(FakeClient(api), SETTINGS, only_node="n3") == [
        "node node-c: no anchor task running on the workspace network"
    ]
    assert len(swarm.anchor_problems(FakeClient(api), SETTINGS)) == 1


def test_only_the_running_task_counts_a_restarted_anchor_must_report_again():
    # t0 reported "1" before the daemon restarted without the setting; t1, its new task, said "0".
    api = FakeApi({"n1": "a"}, {"n1": "t1"}, [("n1", "t0", "NoNewPrivs:\t1"), ("n1", "t1", "NoNewPrivs:\t0")])
    assert "does not set no-new-privileges" in swarm.anchor_problems(FakeClient(api), SETTINGS)[0]
    silent = FakeApi({"n1": "a"}, {"n1": "t1"}, [("n1", "t0", "NoNewPrivs:\t1")])
    assert "does not set no-new-privileges" in swarm.anchor_problems(FakeClient(silent), SETTINGS)[0]


def test_a_missing_anchor_service_is_a_problem():
    api = FakeApi({"n1": "a"}, {}, [])
    api.service_exists = False
    assert (
        "anchor service tre-workspaces-anchor does not exist"
        in swarm.anchor_problems(FakeClient(api), SETTINGS)[0]
    )


def test_the_engine_setting_takes_only_known_engines():
    assert Settings.from_env({"TRE_ENGINE": "swarm"}).engine == "swarm"
    assert Settings.from_env({}).engine == "docker"
    with pytest.raises(SettingsError, match="TRE_ENGINE='kubernetes' is not valid"):
        Settings.from_env({"TRE_ENGINE": "kubernetes"})


def test_sealed_runs_go_to_the_sealed_network_only_on_a_swarm():
    assert swarm.sealed_runs_on(SETTINGS) == "tre-workspaces-sealed"
    assert swarm.sealed_runs_on(Settings(root=Path("/nonexistent"))) is None


class FakeNetworks:
    def __init__(self, subnet: str | None) -> None:
        self.subnet = subnet

    def get(self, name: str):
        if self.subnet is None:
            raise docker.errors.NotFound("no docker_gwbridge")
        return type("Net", (), {"attrs": {"IPAM": {"Config": [{"Subnet": self.subnet}]}}})()


def test_a_gateway_bridge_over_the_tre_subnets_is_reported():
    import ipaddress

    ours = [ipaddress.ip_network("172.31.240.0/24"), ipaddress.ip_network("172.31.241.0/24")]
    client = type("Client", (), {})()
    for subnet, problems in (("172.31.0.0/16", 1), ("10.211.0.0/16", 0), (None, 0)):
        client.networks = FakeNetworks(subnet)
        found = swarm.gwbridge_problems(client, ours)
        assert len(found) == problems, (subnet, found)
    client.networks = FakeNetworks("172.31.0.0/16")
    assert (
        "docker_gwbridge (172.31.0.0/16) overlaps the TRE's subnets"
        in swarm.gwbridge_problems(client, ours)[0]
    )

"""Real workspaces spawned through the hub's REST API: name, image, user, mounts, limits, hardening."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.fixtures_hub import ENGINES, docker_exec, docker_inspect, hub_on_each_engine, running_pair

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def run(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


# Every test here runs on the plain Docker engine and on a single-node swarm.
hub = pytest.fixture(hub_on_each_engine, scope="module", params=ENGINES, name="hub")
workspaces = pytest.fixture(running_pair, scope="module", name="workspaces")


def test_spawn_through_rest_api_gives_hardened_container(hub, workspaces):
    name = workspaces["alice"]
    info = docker_inspect(name)
    cfg, host = info["Config"], info["HostConfig"]
    swarm = hub.settings.engine == "swarm"
    assert cfg["Image"] == hub.settings.image
    assert cfg["User"] == "1000:1000"
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    # A service cannot ask for no-new-privileges: on a swarm it is the daemon's (checked inside below).
    assert swarm or "no-new-privileges:true" in host["SecurityOpt"]
    assert host["ReadonlyRootfs"] is True
    assert host["Privileged"] is False
    assert host["Init"] is True
    assert swarm or host["AutoRemove"] is True  # a service's task goes with its service
    assert list(info["NetworkSettings"]["Networks"]) == [hub.settings.network]
    assert host["PidsLimit"] == 256
    assert host["Memory"] == 2 * 1024**3
    assert host["NanoCpus"] or host["CpuQuota"] == 100_000
    assert not host["Binds"]  # no legacy -v binds (they create missing sources)...
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    if swarm:  # /tmp: a tmpfs volume, since a service's tmpfs takes no noexec
        assert mounts.pop("/tmp")["Type"] == "volume"
        service = info["Config"]["Labels"]["com.docker.swarm.service.name"]
        spec = json.loads(run(["docker", "service", "inspect", service]))[0]["Spec"]
        # Any node: the guard reaches other nodes through their links (test_swarm_nodes).
        assert not spec["TaskTemplate"].get("Placement", {}).get("Constraints")
        assert spec["TaskTemplate"]["RestartPolicy"]["Condition"] == "none"
    else:
        assert "/tmp" in host["Tmpfs"] and "noexec" in host["Tmpfs"]["/tmp"]
        assert {m["Target"] for m in host["Mounts"]} == {"/data", "/home/jovyan"}  # ...only --mount
    assert set(mounts) == {"/data", "/home/jovyan"}
    assert mounts["/data"]["Type"] == "bind" and mounts["/data"]["RW"] is False
    assert mounts["/data"]["Source"] == str(hub.settings.project_dir("proj-a") / "releases" / "1")
    assert mounts["/home/jovyan"]["RW"] is True
    assert mounts["/home/jovyan"]["Source"] == str(hub.settings.home_dir("proj-a", "alice"))
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["JUPYTERHUB_USER"] == "alice" and env["JUPYTERHUB_SERVER_NAME"] == "proj-a"
    assert not {k for k in env if "DOCKER" in k or k.startswith(("AWS", "TRE_DB", "SSH"))}


def test_inside_the_container(workspaces):
    r = docker_exec(
        workspaces["alice"],
        "sh",
        "-c",
        "id -u; id -g; cat /data/data/secret.csv; touch ~/ok && echo home-rw; "
        "grep NoNewPrivs /proc/self/status; grep ' /tmp ' /proc/mounts",
    )
    assert r.returncode == 0, r.stderr
    uid, gid, data, home, nnp, tmp = r.stdout.split("\n")[:6]
    assert (uid, gid) == ("1000", "1000")
    assert data == "project,proj-a"
    assert home == "home-rw"
    assert nnp.split() == ["NoNewPrivs:", "1"]
    assert tmp.startswith("tmpfs /tmp tmpfs ") and {"noexec", "nosuid", "nodev"} <= set(
        tmp.split()[3].split(",")
    )


def test_home_is_created_owned_by_the_container_user(hub, workspaces):
    home = hub.settings.home_dir("proj-a", "alice")
    st = home.stat()
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert st.st_mode & 0o777 == 0o700


def test_bind_mounts_refuse_a_missing_source(tre_hub, tmp_path):
    """What the spawner relies on: a `Mounts` bind of a missing path fails instead of creating it."""
    import subprocess

    missing = tmp_path / "no-such-release"
    r = subprocess.run(
        [
            "docker",
            "create",
            "--mount",
            f"type=bind,source={missing},target=/data,readonly",
            tre_hub.settings.image,
        ],
        capture_output=True,
        text=True,
    )
    if r.returncode == 0:
        subprocess.run(["docker", "rm", r.stdout.strip()], capture_output=True)
    assert r.returncode != 0 and "does not exist" in r.stderr
    assert not missing.exists()

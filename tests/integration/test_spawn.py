"""Real workspaces spawned through the hub's REST API: name, image, user, mounts, limits, hardening."""

from __future__ import annotations

import pytest

from tests.fixtures_hub import docker_exec, docker_inspect

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_spawn_through_rest_api_gives_hardened_container(tre_hub, running):
    name = running["alice"]
    info = docker_inspect(name)
    cfg, host = info["Config"], info["HostConfig"]
    assert cfg["Image"] == tre_hub.settings.image
    assert cfg["User"] == "1000:1000"
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["ReadonlyRootfs"] is True
    assert host["Privileged"] is False
    assert host["AutoRemove"] is True
    assert host["NetworkMode"] == tre_hub.settings.network
    assert list(info["NetworkSettings"]["Networks"]) == [tre_hub.settings.network]
    assert host["PidsLimit"] == 256
    assert host["Memory"] == 2 * 1024**3
    assert host["NanoCpus"] or host["CpuQuota"] == 100_000
    assert "/tmp" in host["Tmpfs"] and "noexec" in host["Tmpfs"]["/tmp"]
    assert not host["Binds"]  # no legacy -v binds (they create missing sources)...
    assert {m["Target"] for m in host["Mounts"]} == {"/data", "/home/jovyan"}  # ...only --mount
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert set(mounts) == {"/data", "/home/jovyan"}
    assert mounts["/data"]["Type"] == "bind" and mounts["/data"]["RW"] is False
    assert mounts["/data"]["Source"] == str(tre_hub.settings.project_dir("proj-a") / "releases" / "1")
    assert mounts["/home/jovyan"]["RW"] is True
    assert mounts["/home/jovyan"]["Source"] == str(tre_hub.settings.home_dir("proj-a", "alice"))
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["JUPYTERHUB_USER"] == "alice" and env["JUPYTERHUB_SERVER_NAME"] == "proj-a"
    assert not {k for k in env if "DOCKER" in k or k.startswith(("AWS", "TRE_DB", "SSH"))}


def test_inside_the_container(running):
    r = docker_exec(
        running["alice"], "sh", "-c", "id -u; id -g; cat /data/data/secret.csv; touch ~/ok && echo home-rw"
    )
    assert r.returncode == 0, r.stderr
    uid, gid, data, home = r.stdout.split("\n")[:4]
    assert (uid, gid) == ("1000", "1000")
    assert data == "project,proj-a"
    assert home == "home-rw"


def test_home_is_created_owned_by_the_container_user(tre_hub, running):
    home = tre_hub.settings.home_dir("proj-a", "alice")
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

"""The production playbook (ansible/site.yml), applied for real to a target built from the project's
own debootstrap base, then applied again: the second run must change nothing.

The target is a container of `tre-base` (the notebook image's Debian root filesystem) in the `hub`
group. It runs the playbook on itself (`ansible-playbook -c local`, as `ansible-pull` does), so the
test needs no connection plugin beyond ansible-core's. What a container cannot run under this test is
done as docs/operations.md tells an operator without systemd: PostgreSQL is started with
pg_ctlcluster, the unit file is checked with `systemd-analyze verify`. Not covered here: the
`docker_hosts` role (a Docker engine and iptables inside an unprivileged container), and `tre hub`
running under systemd; tests/integration/test_restarts.py runs `tre hub` itself.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOMAIN = "tre.deploy.test"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
pytestmark = [pytest.mark.docker, pytest.mark.slow]


def sh(container: str, script: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "exec", container, "bash", "-c", script],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def must(container: str, script: str, timeout: float = 900) -> str:
    done = sh(container, script, timeout)
    assert done.returncode == 0, f"{script}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def target(tmp_path_factory, notebook_image) -> Iterator[str]:
    """A running container of the project's debootstrap base with ansible-core in it, the checkout's
    ansible/ folder, a freshly built TRE wheel and a site certificate mounted read-only."""
    from hub.host.images import BaseRecipe
    from hub.host.tls import local_certificate
    from hub.kernel.settings import Settings

    work = tmp_path_factory.mktemp("deploy")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist", REPO],
        check=True, cwd=work, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )  # fmt: skip
    site = Settings(root=work / "site", domain=DOMAIN)
    local_certificate(site)  # the site's certificate for tre.deploy.test and *.tre.deploy.test
    name = f"tre-deploy-{secrets.token_hex(3)}"
    pip_cache = Path.home() / ".cache" / "pip"
    pip_cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "docker", "run", "-d", "--name", name, "--hostname", "tre-hub",
            "-v", f"{REPO / 'ansible'}:/deploy/ansible:ro",
            "-v", f"{work / 'dist'}:/deploy/dist:ro",
            "-v", f"{site.keys_dir / 'tls'}:/deploy/tls:ro",
            "-v", f"{pip_cache}:/root/.cache/pip",  # the wheels this machine already downloaded
            # This machine reaches the package registries through a TLS-inspecting proxy whose CA is in
            # its bundle; the target trusts the same bundle, as a site behind such a proxy would.
            "-v", f"{HOST_CA_BUNDLE}:/deploy/ca-bundle.crt:ro",
            "-e", "PIP_CERT=/deploy/ca-bundle.crt", "-e", "NODE_EXTRA_CA_CERTS=/deploy/ca-bundle.crt",
            "--entrypoint", "sleep", BaseRecipe().tag, "infinity",
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        import ansible

        version = ansible.__version__  # the same ansible-core as the control node the docs describe
        apt = "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd sudo >/dev/null"
        must(name, f"apt-get update -qq && {apt} && python3 -m venv /opt/ansible")
        must(name, f"/opt/ansible/bin/pip install -q ansible-core=={version}")
        host = "localhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3"
        must(name, f"printf '[hub]\\n{host}\\n' > /deploy-inventory.ini")
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def apply(container: str) -> dict[str, int]:
    out = must(
        container,
        "cd /deploy/ansible && ANSIBLE_FORCE_COLOR=0 /opt/ansible/bin/ansible-playbook "
        f"-i /deploy-inventory.ini site.yml -e tre_manage_services=false -e tre_domain={DOMAIN} "
        "-e tre_tls_cert_src=/deploy/tls/tre.crt -e tre_tls_key_src=/deploy/tls/tre.key",
        timeout=1500,
    )
    recap = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out)
    assert recap, out[-3000:]
    ok, changed, unreachable, failed = map(int, recap.groups())
    return {"ok": ok, "changed": changed, "unreachable": unreachable, "failed": failed, "log": out}


@pytest.fixture(scope="module")
def applied(target) -> tuple[dict, dict]:
    return apply(target), apply(target)


def test_the_playbook_installs_the_tre_and_a_second_apply_changes_nothing(applied):
    first, second = applied
    assert first["failed"] == 0 and first["changed"] > 0
    changed = re.findall(r"changed: \[localhost\].*|TASK \[(.+?)\]", second["log"])
    assert second["changed"] == 0, f"the second apply changed things: {changed}\n{second['log'][-4000:]}"


def test_the_installed_tre_runs_on_postgresql_with_the_site_certificate(target, applied):
    env = "set -a; . /etc/default/tre; set +a; "
    assert must(
        target, "stat -c %a /etc/default/tre /srv/tre/keys/tls/tre.key /srv/tre/state/db-password"
    ).split() == [
        "600",
        "600",
        "600",
    ]
    settings = must(target, "cat /etc/default/tre")
    assert "TRE_DB_URL=postgresql+psycopg://tre:" in settings and f"TRE_DOMAIN={DOMAIN}" in settings
    # The registry lives in PostgreSQL (migrated by the play), and the audit chain verifies.
    assert "audit log intact" in must(target, env + "/opt/tre/venv/bin/tre audit verify")
    tables = must(
        target,
        "sudo -u postgres psql -tAc \"select count(*) from pg_tables where tablename='audit_events'\" tre",
    )
    assert tables.strip() == "1"
    # The certificate serves the domain and every origin below it (the hub's own check).
    assert must(target, env + "/opt/tre/venv/bin/tre tls status").strip()
    # The guard's group exists for `tre network setup` and the guard process.
    assert must(target, "getent group tre-guard").startswith("tre-guard:")
    # The unit file was validated on install and runs the supervisor.
    unit = must(target, "cat /etc/systemd/system/tre-hub.service")
    assert "ExecStart=/opt/tre/venv/bin/tre hub" in unit and "KillMode=mixed" in unit
    must(target, "systemd-analyze verify --man=no /etc/systemd/system/tre-hub.service")
    assert "configurable-http-proxy" in must(target, "ls /usr/local/bin")

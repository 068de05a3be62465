"""The production playbook must at least parse and reference only modules ansible-core ships."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ANSIBLE = Path(__file__).resolve().parents[2] / "ansible"


def test_playbook_syntax(tmp_path):
    exe = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent))
    assert exe, "ansible-core is a dev dependency: run `make venv`"
    result = subprocess.run(
        [exe, "-i", "inventory.example.ini", "site.yml", "--syntax-check"],
        cwd=ANSIBLE,
        capture_output=True,
        text=True,
        env={"ANSIBLE_LOCAL_TEMP": str(tmp_path), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_service_unit_runs_tre_hub():
    unit = (ANSIBLE / "roles/hub/templates/tre-hub.service.j2").read_text()
    assert "ExecStart={{ tre_venv }}/bin/tre hub" in unit
    assert "NoNewPrivileges=true" in unit


def test_every_swarm_worker_runs_the_guards_link():
    unit = (ANSIBLE / "roles/docker_host/templates/tre-link.service.j2").read_text()
    assert "ExecStart={{ tre_venv }}/bin/python -m hub.guard.link --hub-address" in unit
    assert "NoNewPrivileges=true" in unit
    tasks = (ANSIBLE / "roles/docker_host/tasks/main.yml").read_text()
    assert "src: tre-link.service.j2" in tasks

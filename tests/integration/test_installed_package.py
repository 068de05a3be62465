"""The TRE as the Ansible playbook installs it: a wheel in a fresh virtual environment, no checkout.

`tre images build` must find its recipe (the repository's images/ folder travels as package data),
and find the same files, so an installed TRE builds exactly the image a checkout builds.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_an_installed_wheel_finds_the_image_recipe(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, REPO],
        check=True,
        cwd=tmp_path,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    (wheel,) = wheels.glob("tre-*.whl")
    fresh = tmp_path / "fresh"
    venv.create(fresh, with_pip=True)
    python = fresh / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], check=True)
    # The third-party packages come from this environment's site-packages (appended, so the wheel's
    # own hub/ and egress/ win); nothing of the checkout is on the path.
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(purelib, "deps-of-the-test.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRE_", "PYTHON"))}
    env["TRE_ROOT"] = str(tmp_path / "root")
    result = subprocess.run(
        [fresh / "bin" / "tre", "images", "build", "--dry-run", "--json"],
        capture_output=True, text=True, cwd=tmp_path, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    installed = json.loads(result.stdout)
    assert Path(installed["recipe"]).is_relative_to(Path(purelib)), installed["recipe"]
    assert not Path(installed["recipe"]).is_relative_to(REPO)
    here = subprocess.run(
        [Path(sys.executable).parent / "tre", "images", "build", "--dry-run", "--json"],
        capture_output=True, text=True, cwd=tmp_path, env=env, check=True,
    )  # fmt: skip
    checkout = json.loads(here.stdout)
    assert installed["files"] == checkout["files"] and "notebook/Dockerfile" in installed["files"]
    assert installed["recipe_hash_without_base_id"] == checkout["recipe_hash_without_base_id"]

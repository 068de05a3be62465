"""Backup while the TRE runs, wipe its root, restore, start it again: the audit chain verifies, every
egress file and release matches its hash, and people log in (password + TOTP from the restored hub
database) and find their requests. The byte-level refusals are in tests/unit/test_backup.py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures_hub import Hub, egress_login, hub_of_its_own

pytestmark = [pytest.mark.docker, pytest.mark.slow]
TRE = str(Path(sys.executable).parent / "tre")
TITLE = "Counts kept across a restore"


@pytest.fixture(scope="module")
def bhub(tmp_path_factory, hub_image) -> Iterator[Hub]:
    yield from hub_of_its_own(tmp_path_factory, hub_image, "backup")


def tre(hub: Hub, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRE_")} | hub.settings.to_env()
    return subprocess.run([TRE, *args], env=env, capture_output=True, text=True, timeout=300, check=False)


def test_backup_wipe_restore_and_people_find_their_work(bhub, tmp_path):
    alice = egress_login(bhub, "alice")
    page = alice.get(f"{bhub.egress_url}requests")
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)
    origin = bhub.egress_url.split("/services/")[0]
    made = alice.post(
        f"{bhub.egress_url}requests",
        data={"_csrf": csrf, "project": "proj-a", "title": TITLE},
        headers={"Origin": origin},
    )
    assert made.status_code == 200 and TITLE in made.text
    alice.close()

    taken = tre(bhub, "backup", str(tmp_path / "backup"))  # online: the hub and its services run
    assert taken.returncode == 0, taken.stderr
    bhub.process.stop()
    shutil.rmtree(bhub.settings.root)

    restored = tre(bhub, "restore", str(tmp_path / "backup"))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    for check in ("audit log", "code log", "egress files", "data releases"):
        assert f"✓ {check}" in restored.stdout, restored.stdout
    assert tre(bhub, "audit", "verify").returncode == 0

    bhub.process.start()
    alice = egress_login(bhub, "alice")
    assert TITLE in alice.get(f"{bhub.egress_url}requests").text
    bob = egress_login(bhub, "bob")
    assert TITLE not in bob.get(f"{bhub.egress_url}requests").text

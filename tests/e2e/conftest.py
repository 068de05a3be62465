"""The end-to-end stack: the demo TRE (hub.demo, the code `make demo` runs) at a small scale, in a
temporary TRE_ROOT with its own ports, workspace network and firewall chain, and Debian's Chromium
driven by Playwright (never a downloaded browser).

Screenshots go to artifacts/e2e/ at the top of the checkout (git-ignored).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_hub import isolated_settings, issue_test_certificate

NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
PATIENTS = 3_000
WORKSPACE_UID = 1000


@dataclass
class Stack:
    settings: Any  # hub.settings.Settings
    hub: Any  # hub.workspaces.hub_process.HubProcess
    accounts: dict[str, Any]  # username -> hub.demo.Account

    @property
    def url(self) -> str:
        return self.hub.url

    def home(self, project: str, user: str) -> Path:
        return self.settings.home_dir(project, user)


def _seed_home(home: Path) -> None:
    """Put the researcher's notebooks in their workspace home, owned by the container user."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    for nb in NOTEBOOKS.glob("*.ipynb"):
        shutil.copy(nb, home / nb.name)
    for path in [home, *home.rglob("*")]:
        os.chown(path, WORKSPACE_UID, WORKSPACE_UID)


@pytest.fixture(scope="session")
def stack(tmp_path_factory, docker_available) -> Iterator[Stack]:
    if os.geteuid() != 0:
        pytest.skip("the end-to-end journey needs root (Docker, iptables)")
    from hub.demo import stack as demo
    from hub.host import network
    from hub.workspaces.hub_process import HubProcess

    root = tmp_path_factory.mktemp("e2e") / "tre"
    settings = isolated_settings(root, "e2e")
    issue_test_certificate(settings)  # before prepare(), which keeps a certificate that serves
    accounts = demo.prepare(settings, patients=PATIENTS)
    _seed_home(settings.home_dir(demo.DIABETES_PROJECT, demo.RESEARCHER))
    hub = HubProcess(settings)
    try:
        hub.start()
        yield Stack(settings, hub, {a.username: a for a in accounts})
    finally:
        hub.stop()
        network.teardown(settings)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """Keep each phase's report on the test item, so fixtures can screenshot a failed journey."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report

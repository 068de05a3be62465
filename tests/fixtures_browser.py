"""Debian's Chromium driven by Playwright (never a downloaded browser), shared by every browser test.

In CI (CI set) a missing Chromium fails the tests that need it: .ci/setup-host.sh installs it, so a
skip there would hide a broken CI rather than a missing optional tool.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "e2e"


# Module scope: a live sync Playwright runs an event loop on the main thread, which would break
# later tests that use Playwright or asyncio.run() in the same session.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        message = f"no Chromium at {CHROMIUM} (.ci/setup-host.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"CI: {message}", pytrace=False)
        pytest.skip(message)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-background-networking"]
        )
        try:
            yield chromium
        finally:
            chromium.close()

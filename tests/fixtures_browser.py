"""Debian's Chromium driven by Playwright (never a downloaded browser), shared by every browser test.

It trusts the session's test CA (tests.fixtures_hub.test_ca) through an NSS database in a home of
its own, as a person's browser trusts a site's CA; it resolves `*.localhost` itself.

In CI (CI set) a missing Chromium fails the tests that need it: .ci/setup-host.sh installs it, so a
skip there would hide a broken CI rather than a missing optional tool.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from tests.fixtures_hub import test_ca

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
    home = Path(tempfile.mkdtemp(prefix="tre-chromium-"))
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    for args in (
        ["-N", "--empty-password"],
        ["-A", "-t", "C,,", "-n", "tre-test-ca", "-i", test_ca() / "ca.crt"],
    ):
        subprocess.run(["certutil", "-d", f"sql:{nssdb}", *map(str, args)], check=True, capture_output=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-background-networking"],
            env={**os.environ, "HOME": str(home)},
        )
        try:
            yield chromium
        finally:
            chromium.close()


def goto(page: Any, url: str, attempts: int = 3) -> None:
    """page.goto, again when Chromium saw the host's network change under it (ERR_NETWORK_CHANGED):
    the tests create and remove Docker networks, which Chromium notices; the TRE is not at fault."""
    for attempt in range(attempts):
        try:
            page.goto(url)
            return
        except Exception as exc:  # playwright's Error; its module is imported lazily here
            if "ERR_NETWORK_CHANGED" not in str(exc) or attempt == attempts - 1:
                raise
            page.wait_for_timeout(500)


def sign_in(browser: Any, hub: Any, username: str) -> tuple[Any, Any]:
    """`username` in a browser of their own, signed in to the hub with password and TOTP code."""
    from tests.fixtures_hub import PASSWORD

    context = browser.new_context()
    page = context.new_page()
    goto(page, f"{hub.url}/hub/login")
    page.locator("#username_input").fill(username)
    page.locator("#password_input").fill(PASSWORD)
    page.locator("input[name=otp]").fill(hub.code(username))
    page.locator("#login_submit").click()
    page.wait_for_url("**/hub/home")
    return context, page

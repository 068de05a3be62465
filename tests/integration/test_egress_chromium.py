"""The egress pages in a real Chromium: styles load under the strict CSP, forms work end to end,
flagged cells are highlighted, and researcher HTML cannot run script even inside its frame."""

from __future__ import annotations

import pytest

from tests.egress_server import Server
from tests.fixtures_egress import AUTHOR, CHECKER1

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_pages_in_chromium(eg, browser, tmp_path):
    (eg.home() / "report.html").write_text("<p id=x>static</p><script>alert('xss')</script>")
    server = Server(eg.settings.root).start()
    dialogs: list[str] = []
    try:
        author = browser.new_page(extra_http_headers={"X-Test-User": AUTHOR})
        author.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        csp_errors: list[str] = []
        author.on(
            "console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None
        )
        author.goto(f"{server.url}/requests")
        # the stylesheet applied: the header bar is dark blue, not the default transparent
        assert (
            author.eval_on_selector("header.top", "e => getComputedStyle(e).backgroundColor")
            == "rgb(20, 50, 90)"
        )
        author.fill("input[name=title]", "Counts for the paper")
        author.click("text=Create draft")
        author.fill("input[name=name]", "tables")
        author.fill("form:has(input[name=name]) textarea[name=context]", "Patients by region")
        author.fill("form:has(input[name=name]) textarea[name=controls]", "Counts under 10 suppressed")
        author.click("text=Add group")
        author.click("text=Add files from my workspace")
        author.click("text=out/")
        author.click("tr:has-text('counts.csv') >> text=Add")
        author.click("text=Add files from my workspace")
        author.select_option("tr:has-text('report.html') select[name=kind]", "supporting")
        author.click("tr:has-text('report.html') >> text=Add")
        author.click("text=Submit for review")
        assert "submitted" in author.inner_text("h1")
        author.screenshot(path=str(tmp_path / "request.png"), full_page=True)

        checker = browser.new_page(extra_http_headers={"X-Test-User": CHECKER1})
        checker.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        checker.goto(f"{server.url}/queue")
        checker.click("text=Counts for the paper")
        checker.click("text=out/counts.csv")
        flagged = checker.locator("td.flag")
        assert flagged.count() == 1 and flagged.inner_text() == "3"
        checker.check("input[value=approve]")
        checker.click("text=Record vote")
        assert "cat: approve" in checker.content()
        checker.screenshot(path=str(tmp_path / "review.png"), full_page=True)
        checker.goto(f"{server.url}/requests/1")
        checker.click("text=report.html")
        frame = checker.frame_locator("iframe.sandbox")
        assert frame.locator("#x").inner_text() == "static"
        checker.wait_for_timeout(300)
        assert dialogs == [], "researcher script ran"
        assert csp_errors == [] or all("sandbox" in e or "script" in e for e in csp_errors)
    finally:
        server.stop()

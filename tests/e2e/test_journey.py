"""The whole journey in Chromium, through the real stack (tests/e2e/conftest.py):

1. a researcher logs in (password + TOTP), starts their project, runs a notebook in JupyterLab that
   makes a safe table, an unsafe table and a figure with tre_notebook.sdc;
2. asks for their release in the egress service, sees the unsafe table flagged, submits;
3. two checkers review independently, approve two files and ask for changes on the third;
4. the researcher suppresses the table, resubmits, both approve, the bundle downloads and verifies;
5. a researcher of the other project can start, see and download none of it.

Every step leaves a screenshot in artifacts/e2e/.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import pytest
from playwright.sync_api import Error as PlaywrightError

from tests.e2e.conftest import Stack
from tests.fixtures_browser import ARTIFACTS
from tests.fixtures_hub import fresh_code

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]

SPAWN_TIMEOUT_MS = 180_000
RUN_TIMEOUT_S = 180
SAFE, UNSAFE, FIGURE = "outputs/complications.csv", "outputs/type_by_sex.csv", "outputs/complications.png"
OUTPUTS = (SAFE, UNSAFE, FIGURE)
KERNEL_IDLE = """() => {
  const bar = document.querySelector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-NotebookPanel-toolbar");
  const busy = bar && bar.querySelector(".jp-Notebook-ExecutionIndicator");
  return !!bar && /Python 3/.test(bar.innerText) && !!busy && busy.dataset.status === "idle";
}"""


class Person:
    """One user in their own browser context (own cookies), with numbered screenshots."""

    shots = 0
    everyone: ClassVar[list[Person]] = []

    def __init__(self, browser: Any, stack: Stack, username: str) -> None:
        self.stack, self.username = stack, username
        self.context = browser.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
        self.context.set_default_timeout(30_000)
        self.page = self.context.new_page()
        Person.everyone.append(self)

    @property
    def egress(self) -> str:
        return self.stack.settings.service_url("egress").rstrip("/")

    def shot(self, name: str) -> None:
        Person.shots += 1
        self.page.screenshot(path=str(ARTIFACTS / f"{Person.shots:02d}-{self.username}-{name}.png"))

    def login(self) -> None:
        account = self.stack.accounts[self.username]
        page = self.page
        page.goto(f"{self.stack.url}/hub/login")
        page.locator("#username_input").fill(self.username)
        page.locator("#password_input").fill(account.password)
        page.locator("input[name=otp], input[name='2fa']").fill(fresh_code(account.totp_secret))
        self.shot("login")
        page.locator("#login_submit").click()
        page.wait_for_url("**/hub/home")
        page.get_by_role("heading", name="Your projects").wait_for()

    def open_request(self, rid: int) -> None:
        self.page.goto(f"{self.egress}/requests/{rid}")

    def run_notebook(self, project: str, name: str, done: Callable[[], bool]) -> None:
        """Open a notebook in JupyterLab, Run All, and wait until `done()` sees its results on the host."""
        page = self.page
        # ?reset: a fresh layout with only this notebook open, so "Run All" can only mean this one.
        origin = self.stack.settings.origin(self.username)  # every user's servers on an origin of their own
        page.goto(f"{origin}/user/{self.username}/{project}/lab/tree/{name}?reset")
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=SPAWN_TIMEOUT_MS)
        # Run All before the kernel is up can be lost: wait for the toolbar's kernel, idle.
        page.wait_for_function(KERNEL_IDLE, timeout=SPAWN_TIMEOUT_MS)
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
        wait_until(done, RUN_TIMEOUT_S, f"{name} to write its outputs")
        page.keyboard.press("Control+s")

    def close(self) -> None:
        self.context.close()


def wait_until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f}s waiting for {what}")
        time.sleep(0.5)


def scroll_down(page: Any) -> None:
    """Wheel down over the notebook, as a person would (JupyterLab draws cells as they come into view)."""
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").hover()
    page.mouse.wheel(0, 400)
    page.wait_for_timeout(300)


def see_every_output_reproduced(checker: Person, rid: int) -> None:
    """The request's page shows the newest re-run (made on submit) reproducing every output."""

    def reproduced() -> bool:
        checker.open_request(rid)
        newest = checker.page.locator("#reruns article.rerun").first
        if not newest.count():
            return False
        text = newest.inner_text()
        assert "✗" not in text, f"an output was not reproduced:\n{text}"
        return all(f"{PurePosixPath(p).name}\t✓" in text for p in OUTPUTS)

    wait_until(reproduced, RUN_TIMEOUT_S, "the re-run to reproduce every output")
    checker.page.locator("#reruns").scroll_into_view_if_needed()
    checker.shot("reproduced")


def file_row(page: Any, relpath: str) -> Any:
    return page.locator("tr", has=page.get_by_role("link", name=relpath, exact=True))


def vote(checker: Person, rid: int, relpath: str, decision: str, comment: str = "") -> None:
    """Open a file of the request and record a vote on it."""
    page = checker.page
    checker.open_request(rid)
    page.get_by_role("link", name=relpath, exact=True).click()
    page.get_by_role("heading", name="Your review").wait_for()
    page.get_by_label({"approve": "Approve", "changes": "Request changes"}[decision], exact=True).check()
    if comment:
        page.get_by_label("Comment", exact=True).fill(comment)
        page.get_by_label("Comment visible to").select_option("author")
    page.get_by_role("button", name="Record vote").click()
    page.get_by_text(f"{checker.username}: {decision}").first.wait_for()


def state_of(page: Any) -> str:
    return page.locator("h1 .badge").inner_text().strip()


@pytest.fixture
def people(request: pytest.FixtureRequest) -> Iterator[None]:
    """Close every browser context afterwards; on failure, first screenshot what each person sees."""
    Person.everyone = []
    yield
    report = getattr(request.node, "rep_call", None)
    for person in Person.everyone:
        if report is not None and report.failed:
            person.shot("FAILED")
        person.close()


def test_researcher_to_release_through_two_checkers(
    stack: Stack, browser: Any, people: None, tmp_path: Path
) -> None:
    from hub.demo.stack import CHECKERS, DIABETES_PROJECT, LINKED_PROJECT, OTHER_RESEARCHER, RESEARCHER

    home = stack.home(DIABETES_PROJECT, RESEARCHER)
    ada = Person(browser, stack, RESEARCHER)

    # 1. Log in, start the project, watch it start, run the analysis notebook in JupyterLab.
    ada.login()
    page = ada.page
    rows = page.locator("tr.home-server-row")
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.serverName)") == [DIABETES_PROJECT]
    ada.shot("projects")
    page.locator(f"#start-{DIABETES_PROJECT}").click()
    page.wait_for_url(re.compile(r".*/(spawn-pending|spawn)/.*|.*/user/.*"))
    with contextlib.suppress(PlaywrightError):  # a fast spawn may be done before a message shows
        page.locator("#progress-message").get_by_text(re.compile("release|container|JupyterLab")).wait_for(
            timeout=15_000
        )
    ada.shot("starting")
    page.wait_for_url(f"**/user/{RESEARCHER}/{DIABETES_PROJECT}/**", timeout=SPAWN_TIMEOUT_MS)
    page.locator(".jp-LabShell, #jp-main-dock-panel").first.wait_for(timeout=SPAWN_TIMEOUT_MS)
    ada.shot("jupyterlab")

    ada.run_notebook(DIABETES_PROJECT, "analysis.ipynb", lambda: all((home / p).is_file() for p in OUTPUTS))
    assert "complications" in page.locator(".jp-Notebook").inner_text()  # the catalogue's tables
    # JupyterLab renders only the cells in view: scroll down until the figure is drawn.
    figure = page.locator(".jp-RenderedImage img")
    wait_until(lambda: scroll_down(page) or figure.count() > 0, 60, "the figure in the notebook")
    figure.first.scroll_into_view_if_needed()
    ada.shot("notebook-outputs")

    # 2. From the hub to the egress service: a request with three outputs and the notebook.
    page.goto(f"{stack.url}/hub/home")
    page.get_by_role("link", name="Release requests", exact=True).click()
    page.wait_for_url("**/services/egress/requests")
    page.get_by_label("Project").select_option(DIABETES_PROJECT)
    page.get_by_label("Title").fill("Complications and diabetes type by sex")
    ada.shot("egress-new-request")
    page.get_by_role("button", name="Create draft").click()
    page.wait_for_url(re.compile(r".*/requests/\d+$"))
    rid = int(page.url.rsplit("/", 1)[1])
    page.get_by_label("New group name").fill("tables and figure")
    page.get_by_label("Context", exact=True).fill(
        "Counts of people with each complication and of diabetes type by sex (synthetic cohort)."
    )
    page.get_by_label("Controls", exact=True).fill(
        "Counts of people, threshold 10, made with tre_notebook.sdc."
    )
    page.get_by_role("button", name="Add group").click()
    for relpath, kind in [("analysis.ipynb", "supporting"), *((p, "output") for p in OUTPUTS)]:
        folder, _, name = relpath.rpartition("/")
        page.goto(f"{ada.egress}/requests/{rid}/pick" + (f"?dir={folder}" if folder else ""))
        row = file_row(page, name)
        row.locator("select[name=kind]").select_option(kind)
        if relpath == FIGURE:
            ada.shot("egress-pick-files")
        row.get_by_role("button", name="Add").click()
        page.wait_for_url(f"**/requests/{rid}")
    page.get_by_role("button", name="Run automated checks").click()
    findings = page.locator("tr.findings-row")
    findings.first.wait_for()
    assert "fail" in file_row(page, UNSAFE).inner_text()
    assert "threshold" in page.locator("main").inner_text()
    ada.shot("egress-precheck")
    page.get_by_role("button", name="Submit for review").click()
    assert state_of(page) == "submitted"
    ada.shot("egress-submitted")

    # 3. Two checkers, independently: approve the safe table and the figure, changes on the unsafe one.
    cara, chen = (Person(browser, stack, name) for name in CHECKERS)
    for checker in (cara, chen):
        checker.login()
        checker.page.goto(f"{checker.egress}/queue")
        checker.page.get_by_role("link", name="Complications and diabetes type by sex").click()
        assert "cara:" not in checker.page.locator("main").inner_text()  # nobody's votes shown yet
        see_every_output_reproduced(checker, rid)
        checker.shot("review-request")
        vote(checker, rid, SAFE, "approve")
        vote(checker, rid, FIGURE, "approve")
        if checker is chen:  # chen has not seen cara's votes on any file before voting
            assert "cara" not in chen.page.locator("main").inner_text()
        vote(checker, rid, UNSAFE, "changes", "Rare diabetes types give cells under 10.")
        checker.shot("review-vote")
    chen.open_request(rid)
    text = chen.page.locator("main").inner_text()
    assert "cara: approve" in text and "cara: changes" in text  # both done: everything visible
    chen.shot("reviews-visible")
    chen.page.get_by_label("Return to the researcher for changes: reason").fill(
        "Please suppress the small cells in the table by diabetes type and sex."
    )
    chen.page.get_by_role("button", name="Return").click()
    assert state_of(chen.page) == "returned"

    # 4. The researcher suppresses the table, resubmits; both approve; the bundle downloads and verifies.
    page.goto(f"{ada.egress}/requests")
    assert "returned" in file_row(page, "Complications and diabetes type by sex").inner_text()
    ada.open_request(rid)
    assert "Please suppress the small cells" in page.locator("main").inner_text()
    ada.shot("returned")
    sidecar = home / f"{UNSAFE}.sdc.json"

    def suppressed() -> bool:
        return sidecar.is_file() and "primary suppression" in sidecar.read_text()

    ada.run_notebook(DIABETES_PROJECT, "suppress.ipynb", suppressed)
    ada.shot("suppressed-notebook")
    ada.open_request(rid)
    file_row(page, UNSAFE).get_by_role("button", name="Update from workspace").click()
    page.wait_for_url(f"**/requests/{rid}")
    assert "v2" in file_row(page, UNSAFE).inner_text()
    page.get_by_role("button", name="Submit for review").click()
    assert state_of(page) == "submitted"
    for checker in (cara, chen):
        vote(checker, rid, UNSAFE, "approve")
    chen.open_request(rid)
    assert state_of(chen.page) == "released"
    chen.shot("released")

    ada.open_request(rid)
    assert state_of(page) == "released"
    ada.shot("release-download")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download release bundle").click()
    bundle = tmp_path / "bundle.zip"
    download.value.save_as(bundle)
    verified = subprocess.run(
        [str(Path(sys.executable).parent / "tre"), "egress", "verify", str(bundle), "--json"],
        env={"TRE_ROOT": str(stack.settings.root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    record = json.loads(verified.stdout)
    assert record["author"] == RESEARCHER and record["project"] == DIABETES_PROJECT
    assert sorted(record["reviewers"]) == sorted(CHECKERS)
    assert sorted(Path(f["path"]).name for f in record["files"]) == sorted(Path(p).name for p in OUTPUTS)

    # 5. A researcher of the other project only: no workspace, no request, no bundle.
    raj = Person(browser, stack, OTHER_RESEARCHER)
    raj.login()
    rows = raj.page.locator("tr.home-server-row")
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.serverName)") == [LINKED_PROJECT]
    raj.page.goto(f"{stack.url}/hub/spawn/{OTHER_RESEARCHER}/{DIABETES_PROJECT}")
    raj.page.get_by_text(f"not a researcher on project {DIABETES_PROJECT}").first.wait_for(timeout=60_000)
    raj.shot("spawn-refused")
    response = raj.page.goto(f"{raj.egress}/requests/{rid}")
    assert response is not None and response.status == 403
    raj.shot("request-refused")
    response = raj.page.goto(f"{raj.egress}/requests/{rid}/download")
    assert response is not None and response.status == 403
    raj.page.goto(f"{raj.egress}/requests")
    assert "Complications and diabetes type by sex" not in raj.page.locator("main").inner_text()

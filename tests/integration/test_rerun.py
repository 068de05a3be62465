"""A checker re-runs a request's notebook from its page: the egress service executes it on the host in
a sealed container on the project's release and says, per output, whether it was reproduced. A
researcher who hand-edited an output after running the notebook is caught; the run and its result
are audited; people outside the request cannot start one."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from egress.review.models import EgressFile, EgressRerun
from hub.kernel.db import session_scope
from tests.fixtures_egress import AUTHOR, CHECKER1, OUTSIDER, PROJECT
from tests.fixtures_registry import publish_release

pytestmark = [pytest.mark.docker, pytest.mark.slow]
P = "/services/egress"

MAKE = {
    "cells": [
        {
            "cell_type": "code",
            "id": "make",
            "source": "import os, duckdb\nos.makedirs('out', exist_ok=True)\n"
            "duckdb.sql(\"COPY (SELECT region, count(*) AS count FROM '/data/data/cohort.parquet' "
            "GROUP BY region ORDER BY region) TO 'out/counts.csv' (HEADER)\")",
            "metadata": {},
            "outputs": [],
            "execution_count": None,
        }
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


@pytest.fixture
def rerun_world(web, hub_image):
    """The egress test world with a release of 30 people (12 North, 18 South) and the author's notebook."""
    eg, _, client = web
    assert eg.settings.image == hub_image, "re-runs use the workspace image the settings name"
    release = publish_release(eg.settings, PROJECT)
    pq.write_table(pa.table({"region": ["North"] * 12 + ["South"] * 18}), release / "data" / "cohort.parquet")
    for path in (
        release.parent.parent.parent,
        release.parent.parent,
        release.parent,
        release,
        release / "data",
    ):
        path.chmod(0o755)
    (release / "data" / "cohort.parquet").chmod(0o644)
    home = eg.home()
    (home / "make.ipynb").write_text(json.dumps(MAKE))
    (home / "out" / "counts.csv").write_bytes(b"region,count\nNorth,12\nSouth,18\n")
    for path in (home, home / "out", home / "make.ipynb", home / "out" / "counts.csv"):
        os.chown(path, 1000, 1000)
    return eg, client


def submit(eg, counts: bytes) -> int:
    (eg.home() / "out" / "counts.csv").write_bytes(counts)
    rid, _ = eg.draft(files=(("out/counts.csv", "output"), ("make.ipynb", "supporting")))
    eg.commands.submit(AUTHOR, rid)
    return rid


def rerun(client, rid: int, user: str):
    return client(user).post(
        f"{P}/requests/{rid}/rerun", data={"_csrf": f"csrf-{user}"}, follow_redirects=False
    )


def test_a_checker_reruns_the_notebook_and_sees_each_output_reproduced(rerun_world):
    eg, client = rerun_world
    rid = submit(eg, b"region,count\nNorth,12\nSouth,18\n")
    answer = rerun(client, rid, CHECKER1)  # the background run completes before TestClient returns
    assert answer.status_code == 303, answer.text
    page = client(CHECKER1).get(f"{P}/requests/{rid}").text
    assert "Re-run 1" in page and "✓ identical" in page, page[page.find("Re-runs") :][:3000]
    with session_scope(eg.settings) as s:
        row = s.get(EgressRerun, 1)
        assert row.status == "done" and row.release == 1
    started = eg.audit("egress.rerun.start")[-1]
    assert (
        started.actor == CHECKER1 and started.details["release"] == 1 and len(started.details["sha256"]) == 64
    )
    finished = eg.audit("egress.rerun.finish")[-1].details
    assert finished["reproduced"] == 1 and finished["not_reproduced"] == 0


def test_an_output_edited_by_hand_is_not_reproduced(rerun_world):
    eg, client = rerun_world
    rid = submit(eg, b"region,count\nNorth,15\nSouth,18\n")  # 12 rounded up by hand: not what ran
    assert rerun(client, rid, AUTHOR).status_code == 303
    page = client(CHECKER1).get(f"{P}/requests/{rid}").text
    assert "✗ differs" in page and "row 1 column &#39;count&#39;" in page
    assert eg.audit("egress.rerun.finish")[-1].details["not_reproduced"] == 1


def test_only_the_author_and_the_projects_checkers_can_rerun(rerun_world):
    eg, client = rerun_world
    rid = submit(eg, b"region,count\nNorth,12\nSouth,18\n")
    assert rerun(client, rid, OUTSIDER).status_code == 403
    assert eg.audit("egress.refused.rerun")[-1].actor == OUTSIDER
    with session_scope(eg.settings) as s:
        assert s.query(EgressRerun).count() == 0


def test_submitting_a_request_with_its_notebook_reruns_it(rerun_world):
    eg, client = rerun_world
    (eg.home() / "out" / "counts.csv").write_bytes(b"region,count\nNorth,12\nSouth,18\n")
    rid, _ = eg.draft(files=(("out/counts.csv", "output"), ("make.ipynb", "supporting")))
    answer = client(AUTHOR).post(
        f"{P}/requests/{rid}/submit", data={"_csrf": f"csrf-{AUTHOR}"}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    with session_scope(eg.settings) as s:
        (row,) = s.query(EgressRerun).filter_by(request_id=rid).all()
        assert row.requested_by == AUTHOR and row.status == "done"
        assert [r["outcome"] for r in row.results.values()] == ["identical"]


MEANS = {
    **MAKE,
    "cells": [
        {
            "cell_type": "code",
            "id": "means",
            "source": "import os, pandas as pd\nfrom tre_notebook import sdc\n"
            "os.makedirs('out', exist_ok=True)\n"
            "df = pd.read_parquet('/data/data/labs.parquet')\n"
            "sdc.pivot_table(df, values='hba1c', index='region', aggfunc='mean').save('out/means.csv')",
            "metadata": {},
            "outputs": [],
            "execution_count": None,
        }
    ],
}


def test_the_reruns_own_metadata_is_the_one_the_checks_trust(rerun_world):
    """Submitted without its .sdc.json, a means table cannot be checked for dominance (review). The
    re-run writes the metadata itself, outside the researcher's reach: South (one person with 5,000
    among eleven with 5) is then seen to be dominated, and the file's checks say so."""
    eg, client = rerun_world
    release = eg.settings.current_release(PROJECT)
    labs = {"region": ["North"] * 12 + ["South"] * 12, "hba1c": [50.0] * 12 + [5.0] * 11 + [5000.0]}
    pq.write_table(pa.table(labs), release / "data" / "labs.parquet")
    (release / "data" / "labs.parquet").chmod(0o644)
    home = eg.home()
    (home / "means.ipynb").write_text(json.dumps(MEANS))
    # What the notebook writes, without the metadata beside it.
    (home / "out" / "means.csv").write_text("region,hba1c_mean\nNorth,50.0\nSouth,421.25\n")
    rid, fids = eg.draft(files=(("out/means.csv", "output"), ("means.ipynb", "supporting")))
    eg.commands.submit(AUTHOR, rid)

    def dominance() -> list[str]:
        with session_scope(eg.settings) as s:
            checks = s.get(EgressFile, fids[0]).checks
        return [f["verdict"] for f in checks["findings"] if f["rule"] == "dominance"]

    assert dominance() == ["review"]
    assert rerun(client, rid, CHECKER1).status_code == 303
    assert "fail" in dominance()
    with session_scope(eg.settings) as s:
        assert s.get(EgressFile, fids[0]).checks["metadata"] == "re-run"
    assert eg.audit("egress.rerun.finish")[-1].details["rechecked_with_rerun_metadata"] == [fids[0]]


def test_where_reproduction_is_required_an_unreproduced_output_leaves_only_on_two_overrides(rerun_world):
    import base64
    import zipfile

    from hub import registry as reg
    from tests.fixtures_egress import ADMIN, CHECKER2

    eg, client = rerun_world
    with session_scope(eg.settings) as s:
        reg.set_reproduction_rule(s, ADMIN, PROJECT, True)
    assert eg.audit("project.reproduction")[-1].details == {"required": True}
    rid = submit(eg, b"region,count\nNorth,15\nSouth,18\n")  # edited by hand: the re-run will differ
    with session_scope(eg.settings) as s:
        (fid,) = s.query(EgressFile.id).filter_by(request_id=rid, kind="output").one()
    page = client(CHECKER1).get(f"{P}/files/{fid}").text
    assert "Approve as an override of the reproduction rule" in page
    # Plain approvals from both checkers do not release it...
    assert eg.approve_all([fid]) == "under_review"
    # ...nor one override; two do, and the signed record says they were overrides.
    eg.commands.vote(CHECKER1, fid, "approve", sha256=eg.sha(fid), override=True)
    assert eg.commands.vote(CHECKER2, fid, "approve", sha256=eg.sha(fid), override=True) == "released"
    path, _ = eg.commands.download(AUTHOR, rid)
    with zipfile.ZipFile(path) as zf:
        token = zf.read("decision-record.jwt").split(b".")[1]
    claims = json.loads(base64.urlsafe_b64decode(token + b"=" * (-len(token) % 4)))
    reviews = claims["files"][0]["reviews"]
    assert [r["override"] for r in reviews if r["checker"] in (CHECKER1, CHECKER2)][-2:] == [True, True]


def test_a_reproduced_output_needs_no_override(rerun_world):
    from hub import registry as reg
    from tests.fixtures_egress import ADMIN

    eg, client = rerun_world
    with session_scope(eg.settings) as s:
        reg.set_reproduction_rule(s, ADMIN, PROJECT, True)
    rid, fids = eg.draft(files=(("out/counts.csv", "output"), ("make.ipynb", "supporting")))
    client(AUTHOR).post(f"{P}/requests/{rid}/submit", data={"_csrf": f"csrf-{AUTHOR}"})  # re-run on submit
    assert eg.approve_all([fids[0]]) == "released"


def test_a_running_rerun_can_be_cancelled_and_its_container_goes(rerun_world):
    import subprocess
    import threading
    import time

    from egress.review.reruns import EgressReruns

    eg, client = rerun_world
    slow = {**MAKE, "cells": [{**MAKE["cells"][0], "source": "import time\ntime.sleep(600)"}]}
    (eg.home() / "make.ipynb").write_text(json.dumps(slow))
    rid = submit(eg, b"region,count\nNorth,12\nSouth,18\n")
    reruns = EgressReruns(eg.ctx)
    rerun_id = reruns.start(CHECKER1, rid)
    statuses: list[str] = []
    runner = threading.Thread(target=lambda: statuses.append(reruns.execute(rerun_id)))
    runner.start()

    def containers() -> str:
        found = subprocess.run(
            ["docker", "ps", "-q", "--filter", f"label=org.tre.rerun={rerun_id}"],
            capture_output=True,
            text=True,
        )
        return found.stdout.strip()

    deadline = time.monotonic() + 60
    while not containers() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert containers(), "the re-run container should be running"
    assert (
        client(OUTSIDER)
        .post(f"{P}/reruns/{rerun_id}/cancel", data={"_csrf": f"csrf-{OUTSIDER}", "rid": rid})
        .status_code
        == 403
    )
    answer = client(CHECKER1).post(
        f"{P}/reruns/{rerun_id}/cancel",
        data={"_csrf": f"csrf-{CHECKER1}", "rid": rid},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    runner.join(timeout=30)
    assert statuses == ["stopped"] and not containers()
    assert eg.audit("egress.rerun.cancel")[-1].actor == CHECKER1
    with session_scope(eg.settings) as s:
        assert "cancelled by " + CHECKER1 in s.get(EgressRerun, rerun_id).log


def test_a_release_carries_the_five_safes_crate_of_its_rerun(rerun_world, tmp_path):
    """The released bundle's RO-Crate names the sealed re-run as the run (instrument: the notebook,
    object: the data release) and its reproduction of each file as a ValidationCheck; roc-validator
    accepts it as a Process Run Crate and it has the Five Safes profile's entities."""
    from tests.fixtures_crate import crate_of, five_safes_problems, phases, validate

    eg, client = rerun_world
    rid = submit(eg, b"region,count\nNorth,12\nSouth,18\n")
    assert rerun(client, rid, CHECKER1).status_code == 303  # reproduced
    with session_scope(eg.settings) as s:
        output = s.query(EgressFile).filter_by(request_id=rid, kind="output").one().id
        notebook_sha = s.query(EgressRerun).filter_by(request_id=rid).one().notebook_sha256
    assert eg.approve_all([output]) == "released"
    bundle, _ = eg.commands.download(AUTHOR, rid)
    crate = crate_of(bundle)
    assert five_safes_problems(crate) == []
    graph = {e["@id"]: e for e in crate["@graph"]}
    run = graph[graph["./"]["mentions"][0]["@id"]]
    assert run["@type"] == "CreateAction" and run["instrument"] == {"@id": "#notebook"}
    assert graph["#notebook"]["sha256"] == notebook_sha and run["object"] == [{"@id": "#data-release-1"}]
    (validation,) = phases(crate)["ValidationCheck"]
    assert validation["actionStatus"].endswith("CompletedActionStatus")
    assert validation["description"].endswith("identical")
    report = validate(bundle, tmp_path)
    assert report["passed"], report.get("issues")


def test_a_rerun_has_the_projects_limits_and_time_limit(rerun_world):
    """A re-run gets the project's workspace limits (here 128 processes) and its own time limit."""
    from hub import registry as reg
    from tests.fixtures_egress import ADMIN

    eg, client = rerun_world
    with session_scope(eg.settings) as s:
        reg.set_project_limits(s, ADMIN, PROJECT, pids=128, rerun_seconds=10)
    slow = {
        **MAKE,
        "cells": [
            {
                **MAKE["cells"][0],
                "source": "import os, time\nos.makedirs('out', exist_ok=True)\n"
                "v2, v1 = '/sys/fs/cgroup/pids.max', '/sys/fs/cgroup/pids/pids.max'\n"
                "open('out/counts.csv', 'w').write(open(v2 if os.path.exists(v2) else v1).read())\n"
                "time.sleep(120)",
            }
        ],
    }
    (eg.home() / "make.ipynb").write_text(json.dumps(slow))
    rid = submit(eg, b"128\n")
    assert rerun(client, rid, CHECKER1).status_code == 303
    with session_scope(eg.settings) as s:
        row = s.query(EgressRerun).filter_by(request_id=rid).one()
        assert row.status == "stopped" and "limit of 10 s" in row.log, row.log[-500:]
        assert 10 <= row.seconds < 40, row.seconds
        assert [r["outcome"] for r in row.results.values()] == ["identical"]  # pids.max was 128

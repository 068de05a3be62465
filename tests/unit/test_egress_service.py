"""Egress operations end to end against a real registry database (no web layer)."""

from __future__ import annotations

import base64
import zipfile

import pytest

from egress.review.bundle import verify_bundle
from egress.review.errors import BadInput, Conflict, Denied
from hub.kernel.audit import verify as audit_verify
from hub.kernel.db import session_scope
from hub.kernel.signing import load_keyset
from tests.fixtures_egress import AUTHOR, CHECKER1, CHECKER2, CSV, LEAD, PROJECT


def test_happy_path_to_release_and_download(eg):
    rid, fids = eg.submitted(files=(("out/counts.csv", "output"), ("analysis.py", "supporting")))
    view = eg.queries.request_view(AUTHOR, rid)
    assert view["state"] == "submitted"
    assert all(f["checks"] is not None for f in view["files"])
    assert eg.queries.list_requests(CHECKER1, "queue")[0]["id"] == rid
    assert eg.vote(CHECKER1, fids[0], "approve") == "under_review"
    assert eg.vote(CHECKER2, fids[0], "approve") == "released"
    path, _ = eg.commands.download(AUTHOR, rid)
    claims = verify_bundle(path, load_keyset(eg.ctx.signer.keyset_path))
    assert [f["path"] for f in claims["files"]] == ["files/tables/counts.csv"]
    assert claims["reviewers"] == [CHECKER1, CHECKER2]
    assert "supporting" not in claims and "groups" not in claims  # nothing that was not approved
    eg.commands.download(LEAD, rid)
    assert len(eg.audit("egress.release.download")) == 2
    with session_scope(eg.settings) as s:
        assert audit_verify(s).ok


def test_a_release_carries_no_byte_of_a_supporting_file_or_of_free_text(eg):
    """Rows in a supporting notebook and the researcher's free text stay inside, record included."""
    secret_rows = "".join(f"{i:016x},1957-03-{i % 28 + 1:02d},Mrs Example {i}\n" for i in range(200))
    (eg.home() / "notes.txt").write_text("pid,born,name\n" + secret_rows)
    title, context = "Counts by region SECRET-TITLE-7f3a", "context SECRET-CONTEXT-91bc"
    rid = eg.commands.create_request(AUTHOR, PROJECT, title)
    gid = eg.commands.add_group(AUTHOR, rid, "tables", context, "controls SECRET-CONTROLS-55de")
    out = eg.commands.add_file(AUTHOR, rid, gid, "out/counts.csv", "output")
    eg.commands.add_file(AUTHOR, rid, gid, "notes.txt", "supporting")
    eg.commands.submit(AUTHOR, rid)
    assert eg.approve_all([out]) == "released"
    path, _ = eg.commands.download(AUTHOR, rid)
    members = {}
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            members[name] = zf.read(name)
    record = members.pop("decision-record.jwt").split(b".")[1]
    everything = b"".join(members.values()) + base64.urlsafe_b64decode(record + b"=" * (-len(record) % 4))
    raw = path.read_bytes()
    for needle in (
        "SECRET-TITLE-7f3a",
        "SECRET-CONTEXT-91bc",
        "SECRET-CONTROLS-55de",
        "Mrs Example",
        "1957-03-",
    ):
        assert needle.encode() not in everything and needle.encode() not in raw, needle
    assert set(members) == {"files/tables/counts.csv", "ro-crate-metadata.json"}


def test_a_vote_names_the_bytes_it_is_for(eg):
    _, [fid] = eg.submitted()
    seen = eg.sha(fid)
    with pytest.raises(Conflict, match="no longer the one under review"):
        eg.commands.vote(CHECKER1, fid, "approve", sha256="0" * 64)
    assert eg.commands.vote(CHECKER1, fid, "approve", sha256=seen) == "under_review"
    assert eg.audit("egress.refused.vote")


def test_submit_needs_context_and_outputs(eg):
    rid = eg.commands.create_request(AUTHOR, PROJECT, "t")
    with pytest.raises(BadInput, match="at least one output"):
        eg.commands.submit(AUTHOR, rid)
    gid = eg.commands.add_group(AUTHOR, rid, "g")
    eg.commands.add_file(AUTHOR, rid, gid, "out/counts.csv", "output")
    with pytest.raises(BadInput, match="needs context"):
        eg.commands.submit(AUTHOR, rid)
    assert eg.commands.precheck(AUTHOR, rid)


def test_return_update_resubmit_resets_reviews(eg):
    rid, [fid] = eg.submitted()
    eg.vote(CHECKER1, fid, "changes", "round the counts", "author")
    eg.vote(CHECKER2, fid, "approve")
    eg.commands.return_request(CHECKER1, rid, "see comments")
    view = eg.queries.request_view(AUTHOR, rid)
    assert view["state"] == "returned"
    assert any(c["body"] == "round the counts" for c in view["comments"])
    # unchanged bytes: same version, reviews kept
    assert eg.commands.update_file(AUTHOR, fid) == 1
    (eg.home() / "out" / "counts.csv").write_bytes(b"region,count\nAll,15\n")
    assert eg.commands.update_file(AUTHOR, fid) == 2
    eg.commands.submit(AUTHOR, rid)
    view = eg.queries.request_view(CHECKER1, rid)
    assert view["files"][0]["votes"] == []  # reviews of version 1 no longer count
    assert eg.approve_all([fid]) == "released"


def test_duplicate_file_and_withdraw(eg):
    rid, _ = eg.draft()
    gid = eg.queries.request_view(AUTHOR, rid)["groups"][0]["id"]
    with pytest.raises(Conflict, match="already in this request"):
        eg.commands.add_file(AUTHOR, rid, gid, "out/counts.csv", "output")
    eg.commands.withdraw(AUTHOR, rid)
    with pytest.raises(Denied):
        eg.commands.add_file(AUTHOR, rid, gid, "analysis.py", "supporting")


def test_file_content_is_the_snapshot(eg):
    _, [fid] = eg.draft()
    (eg.home() / "out" / "counts.csv").write_text("changed later")
    _, data = eg.queries.file_content(AUTHOR, fid)
    assert data == CSV


def test_checks_fail_visibly_when_the_registry_cannot_be_read(eg, tmp_path):
    """A registry hiccup at submission must not drop the project's stricter rules quietly: the
    project asks for 15, the table has a cell of 12 (fine by the default of 10); with the registry
    unreadable the file fails with a "context" finding instead of passing."""
    import dataclasses

    from egress.review.base import EgressContext
    from egress.review.checks import StoredFile, run_checks
    from hub import registry as reg
    from hub.kernel.db import session_scope
    from tests.fixtures_egress import ADMIN

    with session_scope(eg.settings) as s:
        reg.set_project_sdc_rules(s, ADMIN, PROJECT, {"threshold": 15})
    (eg.home() / "out" / "twelve.csv").write_text("region,count\nNorth,12\nSouth,40\n")
    _, [fid] = eg.draft(files=(("out/twelve.csv", "output"),))
    sha = eg.queries.file_content(AUTHOR, fid, 0)[0]["sha256"]
    files = [StoredFile(fid, "twelve.csv", sha)]

    readable = run_checks(eg.ctx, PROJECT, files)[fid]
    assert readable["verdict"] == "fail"  # the project's threshold of 15 applies
    assert ("threshold", "fail") in {(f["rule"], f["verdict"]) for f in readable["findings"]}

    garbage = tmp_path / "broken.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    broken = EgressContext(dataclasses.replace(eg.settings, db_url_override=f"sqlite:///{garbage}"))
    unreadable = run_checks(broken, PROJECT, files)[fid]
    assert unreadable["verdict"] == "fail"
    context = [f for f in unreadable["findings"] if f["rule"] == "context"]
    assert context and context[0]["verdict"] == "fail" and "could not be read" in context[0]["message"]


def test_raw_reads_and_previews_are_audited(eg):
    rid, [fid] = eg.submitted()
    eg.queries.file_content(CHECKER1, fid, raw=True)
    eg.queries.workspace_preview(AUTHOR, PROJECT, "out/counts.csv")
    [read] = eg.audit("egress.file.read")
    assert read.actor == CHECKER1 and read.object_id == str(rid)
    [preview] = eg.audit("egress.workspace.preview")
    assert preview.actor == AUTHOR and preview.details["path"] == "out/counts.csv"

"""Egress operations end to end against a real registry database (no web layer)."""

from __future__ import annotations

import pytest

from egress.bundle import verify_bundle
from egress.service import BadInput, Conflict, Denied
from egress.signing import load_keyset
from hub.audit import verify as audit_verify
from hub.db import session_scope
from tests.fixtures_egress import AUTHOR, CHECKER1, CHECKER2, CSV, LEAD, PROJECT


def test_happy_path_to_release_and_download(eg):
    rid, fids = eg.submitted(files=(("out/counts.csv", "output"), ("analysis.py", "supporting")))
    view = eg.svc.request_view(AUTHOR, rid)
    assert view["state"] == "submitted"
    assert all(f["checks"] is not None for f in view["files"])
    assert eg.svc.list_requests(CHECKER1, "queue")[0]["id"] == rid
    assert eg.svc.vote(CHECKER1, fids[0], "approve") == "under_review"
    assert eg.svc.vote(CHECKER2, fids[0], "approve") == "released"
    path, _ = eg.svc.download(AUTHOR, rid)
    claims = verify_bundle(path, load_keyset(eg.svc.signer.keyset_path))
    assert [f["name"] for f in claims["files"]] == ["counts.csv"]
    assert claims["reviewers"] == [CHECKER1, CHECKER2]
    assert [f["name"] for f in claims["supporting"]] == ["analysis.py"]
    eg.svc.download(LEAD, rid)
    assert len(eg.audit("egress.release.download")) == 2
    with session_scope(eg.settings) as s:
        assert audit_verify(s).ok


def test_submit_needs_context_and_outputs(eg):
    rid = eg.svc.create_request(AUTHOR, PROJECT, "t")
    with pytest.raises(BadInput, match="at least one output"):
        eg.svc.submit(AUTHOR, rid)
    gid = eg.svc.add_group(AUTHOR, rid, "g")
    eg.svc.add_file(AUTHOR, rid, gid, "out/counts.csv", "output")
    with pytest.raises(BadInput, match="needs context"):
        eg.svc.submit(AUTHOR, rid)
    assert eg.svc.precheck(AUTHOR, rid)


def test_return_update_resubmit_resets_reviews(eg):
    rid, [fid] = eg.submitted()
    eg.svc.vote(CHECKER1, fid, "changes", "round the counts", "author")
    eg.svc.vote(CHECKER2, fid, "approve")
    eg.svc.return_request(CHECKER1, rid, "see comments")
    view = eg.svc.request_view(AUTHOR, rid)
    assert view["state"] == "returned"
    assert any(c["body"] == "round the counts" for c in view["comments"])
    # unchanged bytes: same version, reviews kept
    assert eg.svc.update_file(AUTHOR, fid) == 1
    (eg.home() / "out" / "counts.csv").write_bytes(b"region,count\nAll,15\n")
    assert eg.svc.update_file(AUTHOR, fid) == 2
    eg.svc.submit(AUTHOR, rid)
    view = eg.svc.request_view(CHECKER1, rid)
    assert view["files"][0]["votes"] == []  # reviews of version 1 no longer count
    assert eg.approve_all([fid]) == "released"


def test_duplicate_file_and_withdraw(eg):
    rid, _ = eg.draft()
    gid = eg.svc.request_view(AUTHOR, rid)["groups"][0]["id"]
    with pytest.raises(Conflict, match="already in this request"):
        eg.svc.add_file(AUTHOR, rid, gid, "out/counts.csv", "output")
    eg.svc.withdraw(AUTHOR, rid)
    with pytest.raises(Denied):
        eg.svc.add_file(AUTHOR, rid, gid, "analysis.py", "supporting")


def test_file_content_is_the_snapshot(eg):
    _, [fid] = eg.draft()
    (eg.home() / "out" / "counts.csv").write_text("changed later")
    _, data = eg.svc.file_content(AUTHOR, fid)
    assert data == CSV

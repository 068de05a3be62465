"""Attacks on the egress controls: each one is refused, and each refusal is in the audit log."""

from __future__ import annotations

import base64
import json
import os
import zipfile
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from egress.review.bundle import RECORD_NAME, file_sha256
from egress.review.errors import Denied
from egress.review.models import EgressRelease
from egress.review.storage import Refused
from hub.cli import app as tre
from hub.kernel.audit import verify as audit_verify
from hub.kernel.db import session_scope
from hub.kernel.signing import InvalidRecord, Signer
from tests.fixtures_egress import (
    AUTHOR,
    AUTHOR_CHECKER,
    CHECKER1,
    CHECKER2,
    CSV,
    LEAD,
    OTHER_RESEARCHER,
    OUTSIDER,
    PROJECT,
)

P = "/services/egress"


def refusals(eg, action):
    return eg.audit(f"egress.refused.{action}")


def assert_audited(eg, action, who, count=1):
    events = [e for e in refusals(eg, action) if e.actor == who]
    assert len(events) >= count, f"no egress.refused.{action} event for {who}"
    assert events[-1].details["reason"]
    with session_scope(eg.settings) as s:
        assert audit_verify(s).ok


def test_self_approval(eg):
    rid, [fid] = eg.submitted(author=AUTHOR_CHECKER, files=(("out/counts.csv", "output"),))
    with pytest.raises(Denied, match="your own request"):
        eg.vote(AUTHOR_CHECKER, fid, "approve")
    assert_audited(eg, "vote", AUTHOR_CHECKER)
    eg.vote(CHECKER1, fid, "approve")
    assert eg.queries.request_view(AUTHOR_CHECKER, rid)["state"] == "under_review"


def test_single_checker_cannot_approve_or_release(eg):
    rid, [fid] = eg.submitted()
    assert eg.vote(CHECKER1, fid, "approve") == "under_review"
    assert eg.vote(CHECKER1, fid, "approve") == "under_review"  # voting twice counts once
    with pytest.raises(Denied, match="must be approved first"):
        eg.commands.release(CHECKER1, rid)
    assert_audited(eg, "release", CHECKER1)
    with pytest.raises(Denied, match="Two checkers"):
        eg.commands.return_request(CHECKER1, rid)
    assert_audited(eg, "return", CHECKER1)


@pytest.mark.parametrize("who", [LEAD, AUTHOR, OUTSIDER, OTHER_RESEARCHER])
def test_non_checker_vote(eg, who):
    _, [fid] = eg.submitted()
    with pytest.raises(Denied):
        eg.vote(who, fid, "approve")
    assert_audited(eg, "vote", who)


def test_researcher_of_another_project(web):
    eg, _, client = web
    rid, [fid] = eg.submitted()
    c = client(OTHER_RESEARCHER)
    c.headers["X-Test-Via"] = "token"
    assert c.get(P + f"/api/requests/{rid}").status_code == 403
    assert c.get(P + f"/api/files/{fid}").status_code == 403
    assert c.get(P + f"/files/{fid}/raw").status_code == 403
    assert c.post(P + "/api/requests", json={"project": PROJECT, "title": "x"}).status_code == 403
    assert c.get(P + f"/api/workspace/{PROJECT}").status_code == 403
    vote = {"decision": "approve", "sha256": eg.sha(fid)}
    assert c.post(P + f"/api/files/{fid}/votes", json=vote).status_code == 403
    assert rid not in [r["id"] for r in c.get(P + "/api/requests?scope=queue").json()]
    for action in ("view", "create", "workspace", "vote"):
        assert_audited(eg, action, OTHER_RESEARCHER)


def test_file_changed_in_workspace_after_submission(eg):
    rid, [fid] = eg.submitted()
    (eg.home() / "out" / "counts.csv").write_bytes(b"region,count\nNorth,1\nSouth,2\n")
    with pytest.raises(Denied, match="cannot be changed"):
        eg.commands.update_file(AUTHOR, fid)
    assert_audited(eg, "update_file", AUTHOR)
    assert eg.approve_all([fid]) == "released"
    path, _ = eg.commands.download(AUTHOR, rid)
    with zipfile.ZipFile(path) as zf:
        [member] = [n for n in zf.namelist() if n.startswith("files/")]
        assert zf.read(member) == CSV  # what was reviewed, not what the workspace holds now


def test_stored_copy_tampered_after_review_is_not_released(eg):
    rid, [fid] = eg.submitted()
    sha = eg.queries.request_view(AUTHOR, rid)["files"][0]["sha256"]
    blob = eg.ctx.store.path(sha)
    blob.chmod(0o600)
    blob.write_bytes(b"region,count\nNorth,1\n")
    assert eg.approve_all([fid]) == "approved"  # approved, but the release refuses
    assert_audited(eg, "release", CHECKER2)
    assert eg.queries.request_view(AUTHOR, rid)["release"] is None


@pytest.mark.parametrize("path", ["../diab-study/lee/x.csv", "out/../../ozz/x.csv", "/etc/passwd.txt"])
def test_dot_dot_and_absolute_paths(eg, path):
    rid, _ = eg.draft()
    gid = eg.queries.request_view(AUTHOR, rid)["groups"][0]["id"]
    with pytest.raises(Refused):
        eg.commands.add_file(AUTHOR, rid, gid, path, "output")
    assert_audited(eg, "add_file", AUTHOR)


def test_symlink_to_data(eg, tmp_path):
    data = tmp_path / "data"
    (data / "raw").mkdir(parents=True)
    (data / "raw" / "patients.csv").write_text("national_id\n9000000001\n")
    os.symlink(data / "raw" / "patients.csv", eg.home() / "out" / "patients.csv")
    os.symlink(data, eg.home() / "data")
    rid, _ = eg.draft()
    gid = eg.queries.request_view(AUTHOR, rid)["groups"][0]["id"]
    for path in ("out/patients.csv", "data/raw/patients.csv"):
        with pytest.raises(Refused, match="symbolic link"):
            eg.commands.add_file(AUTHOR, rid, gid, path, "output")
    assert_audited(eg, "add_file", AUTHOR, count=2)
    with pytest.raises(Refused, match="symbolic link"):
        eg.queries.workspace_preview(AUTHOR, PROJECT, "data/raw/patients.csv")
    assert_audited(eg, "preview", AUTHOR)


def _released(eg):
    rid, [fid] = eg.submitted()
    eg.approve_all([fid])
    return rid, eg.commands.download(AUTHOR, rid)[0]


def _b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _with_record(src, dst, token):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, token if name == RECORD_NAME else zin.read(name))


def _forgeries(eg, bundle, tmp_path):
    with zipfile.ZipFile(bundle) as zf:
        genuine = zf.read(RECORD_NAME).decode()
    claims = jwt.decode(genuine, options={"verify_signature": False})
    kid = jwt.get_unverified_header(genuine)["kid"]
    claims["author"] = "mallory"
    other = Signer(tmp_path / "attacker-keys")
    other_kid = other.ensure_key()
    # the attacker signs with their own key but claims our kid: the signature does not verify
    attacker_key = serialization.load_pem_private_key((other.dir / f"{other_kid}.pem").read_bytes(), None)
    return {
        "alg-none": f"{_b64({'alg': 'none', 'kid': kid, 'typ': 'JWT'})}.{_b64(claims)}.",
        "forged": jwt.encode(claims, attacker_key, algorithm="EdDSA", headers={"kid": kid}),
        "wrong-key": other.sign(claims),
        "expired": eg.ctx.signer.sign(claims, validity=timedelta(seconds=-5)),
    }


def test_forged_expired_and_alg_none_records_refused_offline(eg, tmp_path):
    _, bundle = _released(eg)
    keyset = eg.ctx.signer.keyset_path
    runner = CliRunner()
    ok = runner.invoke(tre, ["egress", "verify", str(bundle), "--keyset", str(keyset)])
    assert ok.exit_code == 0, ok.output
    for name, token in _forgeries(eg, bundle, tmp_path).items():
        bad = tmp_path / f"{name}.zip"
        _with_record(bundle, bad, token)
        result = runner.invoke(tre, ["egress", "verify", str(bad), "--keyset", str(keyset)])
        assert result.exit_code != 0, name
        assert "NOT VERIFIED" in result.output, name


def test_forged_record_on_the_server_is_refused_at_download_and_audited(eg, tmp_path):
    rid, bundle = _released(eg)
    token = _forgeries(eg, bundle, tmp_path)["alg-none"]
    _with_record(bundle, tmp_path / "x.zip", token)
    # replace the stored bundle and its recorded hash, as an attacker with disk access would
    os.replace(tmp_path / "x.zip", bundle)
    with session_scope(eg.settings) as s:
        rel = s.query(EgressRelease).filter_by(request_id=rid).one()
        rel.bundle_sha256 = file_sha256(bundle)
    with pytest.raises(InvalidRecord, match="'none'"):
        eg.commands.download(AUTHOR, rid)
    assert_audited(eg, "download", AUTHOR)


def test_cross_site_form_post(web):
    eg, _, client = web
    rid, _ = eg.draft()
    c = client(AUTHOR)
    attacks = [
        ({"Origin": "https://evil.example"}, {"_csrf": f"csrf-{AUTHOR}"}),  # right token, wrong site
        ({"Sec-Fetch-Site": "cross-site"}, {"_csrf": f"csrf-{AUTHOR}"}),
        ({}, {}),  # no token
        ({}, {"_csrf": "guessed"}),
    ]
    for headers, data in attacks:
        r = c.post(P + f"/requests/{rid}/withdraw", data=data, headers=headers, follow_redirects=False)
        assert r.status_code == 403, (headers, data)
    assert eg.queries.request_view(AUTHOR, rid)["state"] == "draft"
    assert len([e for e in refusals(eg, "csrf") if e.actor == AUTHOR]) == len(attacks)
    # cookie-authenticated API writes need the header token too
    r = c.post(P + f"/api/requests/{rid}/actions/withdraw")
    assert r.status_code == 403
    r = c.post(P + f"/api/requests/{rid}/actions/withdraw", headers={"X-CSRF-Token": f"csrf-{AUTHOR}"})
    assert r.status_code == 200 and r.json()["state"] == "withdrawn"


def test_download_before_approval(web):
    eg, _, client = web
    rid, [fid] = eg.submitted()
    eg.vote(CHECKER1, fid, "approve")
    for who in (AUTHOR, LEAD):
        assert client(who).get(P + f"/requests/{rid}/download").status_code == 403
        assert_audited(eg, "download", who)
    eg.vote(CHECKER2, fid, "approve")
    assert client(CHECKER1).get(P + f"/requests/{rid}/download").status_code == 403  # checkers never
    assert_audited(eg, "download", CHECKER1)
    # a link on another site must not "download" (which would end the chance to revoke)
    cross = client(AUTHOR).get(P + f"/requests/{rid}/download", headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403 and eg.queries.request_view(AUTHOR, rid)["release"]["downloads"] == 0
    assert_audited(eg, "csrf", AUTHOR)
    assert client(AUTHOR).get(P + f"/requests/{rid}/download").status_code == 200


def test_revoke_only_before_download_and_only_by_admin(eg):
    rid, [fid] = eg.submitted()
    eg.approve_all([fid])
    with pytest.raises(Denied):
        eg.commands.revoke(CHECKER1, rid, "no")
    eg.commands.download(AUTHOR, rid)
    with pytest.raises(Denied, match="already been downloaded"):
        eg.commands.revoke("admin", rid, "too late")
    assert_audited(eg, "revoke", "admin")


def test_audit_log_is_admin_only(web):
    eg, _, client = web
    assert client(CHECKER1).get(P + "/api/audit", headers={"X-Test-Via": "token"}).status_code == 403
    assert_audited(eg, "audit_log", CHECKER1)
    r = client("admin").get(P + "/audit?action=egress.refused")
    assert r.status_code == 200 and "egress.refused.audit_log" in r.text


def test_only_admins_list_every_request(web):
    eg, _, client = web
    rid, _ = eg.submitted()
    assert (
        client(CHECKER1).get(P + "/api/requests?scope=all", headers={"X-Test-Via": "token"}).status_code
        == 403
    )
    assert_audited(eg, "list_all", CHECKER1)
    page = client("admin").get(P + "/all")
    assert page.status_code == 200 and f"/requests/{rid}" in page.text


def test_the_download_api_refuses_a_request_from_another_site(web):
    """The API's download is recorded and final like the page's: another site must not start it."""
    eg, _, client = web
    rid, fids = eg.submitted()
    eg.approve_all(fids)
    c = client(AUTHOR)
    c.headers["X-Test-Via"] = "token"
    cross = {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
    assert c.get(P + f"/api/requests/{rid}/download", headers=cross).status_code == 403
    assert not eg.audit("egress.release.download")
    assert eg.audit("egress.refused.csrf")
    assert c.get(P + f"/api/requests/{rid}/download").status_code == 200  # control: same site

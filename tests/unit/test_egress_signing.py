"""Signed decision records and release bundles: genuine ones verify, everything else is refused."""

from __future__ import annotations

import base64
import json
import zipfile
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from egress.review.bundle import RECORD_NAME, BundleFile, build_bundle, verify_bundle
from egress.review.storage import BlobStore
from hub.kernel.signing import InvalidRecord, Signer, load_keyset, verify_record


@pytest.fixture
def signer(tmp_path):
    return Signer(tmp_path / "keys")


def keyset(signer):
    return load_keyset(signer.keyset_path)


def test_key_generated_on_first_use_with_private_permissions(signer):
    kid = signer.ensure_key()
    assert signer.ensure_key() == kid
    pem = signer.dir / f"{kid}.pem"
    assert pem.stat().st_mode & 0o777 == 0o600
    assert signer.dir.stat().st_mode & 0o777 == 0o700
    [jwk] = keyset(signer)["keys"]
    assert jwk["kid"] == kid and jwk["crv"] == "Ed25519" and "d" not in jwk


def test_sign_and_verify_round_trip(signer):
    token = signer.sign({"request": 7})
    claims = verify_record(token, keyset(signer))
    assert claims["request"] == 7 and claims["iss"] == "tre-egress"
    assert jwt.get_unverified_header(token)["kid"] == signer.ensure_key()


def test_rotation_keeps_old_records_valid(signer):
    old = signer.sign({"n": 1})
    new_kid = signer.rotate()
    new = signer.sign({"n": 2})
    ks = keyset(signer)
    assert len(ks["keys"]) == 2
    assert verify_record(old, ks)["n"] == 1
    assert verify_record(new, ks)["n"] == 2
    assert jwt.get_unverified_header(new)["kid"] == new_kid


def test_refuses_expired(signer):
    token = signer.sign({"n": 1}, validity=timedelta(seconds=-1))
    with pytest.raises(InvalidRecord, match="expired"):
        verify_record(token, keyset(signer))


def _b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_refuses_alg_none(signer):
    genuine = signer.sign({"n": 1})
    payload = jwt.decode(genuine, options={"verify_signature": False})
    kid = jwt.get_unverified_header(genuine)["kid"]
    forged = f"{_b64({'alg': 'none', 'kid': kid})}.{_b64(payload)}."
    with pytest.raises(InvalidRecord, match="algorithm 'none'"):
        verify_record(forged, keyset(signer))


def test_refuses_hmac_with_public_key(signer):
    signer.ensure_key()
    ks = keyset(signer)
    jwk = ks["keys"][0]
    forged = jwt.encode(
        {"n": 1, "iss": "tre-egress", "aud": "tre-release"},
        jwk["x"],
        algorithm="HS256",
        headers={"kid": jwk["kid"]},
    )
    with pytest.raises(InvalidRecord, match="HS256"):
        verify_record(forged, ks)


def test_refuses_wrong_key_and_unknown_kid(signer, tmp_path):
    signer.ensure_key()
    other = Signer(tmp_path / "other")
    token = other.sign({"n": 1})
    with pytest.raises(InvalidRecord, match="unknown key"):
        verify_record(token, keyset(signer))
    # same kid, different key: the signature does not match
    attacker = Ed25519PrivateKey.generate()
    payload = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode(payload, attacker, algorithm="EdDSA", headers={"kid": signer.ensure_key()})
    with pytest.raises(InvalidRecord, match="invalid"):
        verify_record(forged, keyset(signer))


def test_refuses_tampered_payload(signer):
    h, _, s = signer.sign({"files": [{"sha256": "a" * 64}]}).split(".")
    payload = jwt.decode(signer.sign({"x": 1}), options={"verify_signature": False})
    payload["files"] = [{"sha256": "b" * 64}]
    with pytest.raises(InvalidRecord):
        verify_record(f"{h}.{_b64(payload)}.{s}", keyset(signer))
    with pytest.raises(InvalidRecord, match="not a signed record"):
        verify_record("garbage", keyset(signer))


def _bundle(tmp_path, signer):
    store = BlobStore(tmp_path / "egress")
    sha = store.put_bytes(b"region,count\nN,12\n")
    files = [BundleFile("files/tables/counts.csv", sha)]
    token = signer.sign({"files": [{"path": f.path, "sha256": f.sha256} for f in files]})
    dest = tmp_path / "egress" / "releases" / "r1.zip"
    build_bundle(dest, token, files, store)
    return dest, store


def test_bundle_verifies_offline(tmp_path, signer):
    dest, _ = _bundle(tmp_path, signer)
    claims = verify_bundle(dest, keyset(signer))
    assert claims["files"][0]["path"] == "files/tables/counts.csv"


def _rewrite(src, dst, replace=None, add=None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, (replace or {}).get(name, zin.read(name)))
        for name, data in (add or {}).items():
            zout.writestr(name, data)


def test_bundle_refuses_changed_extra_or_missing_files(tmp_path, signer):
    dest, _ = _bundle(tmp_path, signer)
    bad = tmp_path / "bad.zip"
    _rewrite(dest, bad, replace={"files/tables/counts.csv": b"region,count\nN,2\n"})
    with pytest.raises(InvalidRecord, match="does not match"):
        verify_bundle(bad, keyset(signer))
    _rewrite(dest, bad, add={"files/extra.csv": b"x"})
    with pytest.raises(InvalidRecord, match="does not list"):
        verify_bundle(bad, keyset(signer))
    _rewrite(dest, bad, replace={RECORD_NAME: Signer(tmp_path / "k2").sign({"files": []})})
    with pytest.raises(InvalidRecord, match="unknown key"):
        verify_bundle(bad, keyset(signer))
    (tmp_path / "notzip").write_bytes(b"nope")
    with pytest.raises(InvalidRecord, match="not a release bundle"):
        verify_bundle(tmp_path / "notzip", keyset(signer))


def test_bundle_refuses_to_build_from_a_tampered_blob(tmp_path, signer):
    store = BlobStore(tmp_path / "egress")
    sha = store.put_bytes(b"ok")
    p = store.path(sha)
    p.chmod(0o600)
    p.write_bytes(b"evil")
    dest = tmp_path / "r.zip"
    with pytest.raises(InvalidRecord, match="does not match"):
        build_bundle(dest, "x.y.z", [BundleFile("files/a.csv", sha)], store)
    assert not dest.exists()


def test_cli_rotate_key_and_verify(tre_root, tmp_path):
    from typer.testing import CliRunner

    from hub.cli import app as tre
    from hub.kernel.settings import get_settings

    signer = Signer(get_settings().keys_dir)
    dest, _ = _bundle(tmp_path, signer)
    runner = CliRunner()
    assert runner.invoke(tre, ["egress", "verify", str(dest), "--json"]).exit_code == 0
    rotated = runner.invoke(tre, ["egress", "rotate-key"])
    assert rotated.exit_code == 0 and "new signing key" in rotated.output
    result = runner.invoke(tre, ["egress", "verify", str(dest), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output)["files"][0]["path"] == "files/tables/counts.csv"
    assert len(keyset(signer)["keys"]) == 2


@pytest.mark.parametrize("claim, value", [("aud", "another-service"), ("iss", "someone-else")])
def test_refuses_a_genuine_signature_for_another_audience_or_issuer(signer, claim, value):
    """A token our key signed for some other purpose must not pass as a release record."""
    kid = signer.ensure_key()
    key = serialization.load_pem_private_key((signer.dir / f"{kid}.pem").read_bytes(), password=None)
    now = datetime.now(UTC)
    claims = {"n": 1, "iss": "tre-egress", "aud": "tre-release", "iat": now, "exp": now + timedelta(hours=1)}
    claims |= {"jti": "x", claim: value}
    token = jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})
    with pytest.raises(InvalidRecord, match="invalid"):
        verify_record(token, keyset(signer))

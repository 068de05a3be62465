"""Every release bundle carries a Five Safes RO-Crate: the run, each check and each sign-off as
linked data, its hash in the signed record (so a changed crate fails `tre egress verify`), accepted
by roc-validator under the Process Run Crate profile and holding the Five Safes profile's entities."""

from __future__ import annotations

import hashlib
import zipfile

import pytest

from egress.review.bundle import verify_bundle
from hub.kernel.signing import InvalidRecord, load_keyset
from tests.fixtures_crate import crate_of, five_safes_problems, phases, validate
from tests.fixtures_egress import AUTHOR, CHECKER1, CHECKER2, PROJECT


@pytest.fixture
def released(eg):
    rid, fids = eg.submitted(files=(("out/counts.csv", "output"), ("analysis.py", "supporting")))
    assert eg.approve_all(fids[:1]) == "released"
    path, _ = eg.commands.download(AUTHOR, rid)
    return eg, rid, path


def test_the_crate_describes_the_release_and_its_hash_is_signed(released):
    eg, rid, path = released
    claims = verify_bundle(path, load_keyset(eg.ctx.signer.keyset_path))
    with zipfile.ZipFile(path) as zf:
        raw = zf.read("ro-crate-metadata.json")
        counts = zf.read("files/tables/counts.csv")
    assert claims["crate_sha256"] == hashlib.sha256(raw).hexdigest()
    crate = crate_of(path)
    assert five_safes_problems(crate) == []
    graph = {e["@id"]: e for e in crate["@graph"]}
    assert graph["files/tables/counts.csv"]["sha256"] == hashlib.sha256(counts).hexdigest()
    assert graph["./"]["sourceOrganization"] == {"@id": f"#project-{PROJECT}"}
    assert graph[f"#request-{rid}"]["agent"] == {"@id": f"#person-{AUTHOR}"}  # no re-run: the request
    found = phases(crate)
    assert [a["agent"]["@id"] for a in found["SignOff"]] == [f"#person-{CHECKER1}", f"#person-{CHECKER2}"]
    assert len(found["DisclosureCheck"]) == 1 and len(found["CheckValue"]) == 1
    assert "ValidationCheck" not in found  # nothing was re-run
    assert "analysis.py" not in raw.decode()  # nothing of a supporting file


def test_a_changed_crate_fails_verification(released, tmp_path):
    eg, _, path = released
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(forged, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "ro-crate-metadata.json":
                data = data.replace(b"CompletedActionStatus", b"FailedActionStatus", 1)
            dst.writestr(name, data)
    with pytest.raises(InvalidRecord, match=r"ro-crate-metadata\.json does not match"):
        verify_bundle(forged, load_keyset(eg.ctx.signer.keyset_path))


@pytest.mark.slow
def test_roc_validator_accepts_the_crate_as_a_process_run_crate(released, tmp_path):
    _, _, path = released
    report = validate(path, tmp_path)
    assert report["passed"], report.get("issues")


def test_a_verified_bundle_becomes_a_valid_bagit_zip(released, tmp_path):
    """`tre egress verify --bag`: the release packaged as the Five Safes profile describes (BagIt,
    the crate and files under data/), refused for a bundle that does not verify."""
    import bagit
    from typer.testing import CliRunner

    from hub.cli import app

    eg, _, path = released
    keyset = str(eg.ctx.signer.keyset_path)
    out = tmp_path / "release-bag.zip"
    result = CliRunner().invoke(app, ["egress", "verify", str(path), "--keyset", keyset, "--bag", str(out)])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out) as zf:
        zf.extractall(tmp_path / "unzipped")
    (bag_dir,) = (tmp_path / "unzipped").iterdir()
    bag = bagit.Bag(str(bag_dir))
    bag.validate()
    assert {"data/ro-crate-metadata.json", "data/files/tables/counts.csv"} <= set(bag.payload_files())
    assert "sha256" in bag.algorithms
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(forged, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name) + (b"x" if name.endswith(".csv") else b""))
    refused = CliRunner().invoke(
        app, ["egress", "verify", str(forged), "--keyset", keyset, "--bag", str(tmp_path / "no.zip")]
    )
    assert refused.exit_code != 0 and "NOT VERIFIED" in refused.output
    assert not (tmp_path / "no.zip").exists()

"""The release's Five Safes RO-Crate: what was run, on which data, and every check, as linked data.

A released bundle carries `ro-crate-metadata.json` (hub.kernel.fivesafes) beside its files; the
signed decision record holds its SHA-256, so `tre egress verify` checks it offline with the rest.

- The run (`CreateAction`): the platform's sealed re-run of the request's notebook (instrument) on
  the project's release (object), resulting in the released files; without a re-run, the author's
  request, made in her workspace (instrument: the workspace image).
- The checks (`AssessAction`): the automated disclosure checks (`DisclosureCheck`), the re-run's
  reproduction of each file (`ValidationCheck`), each checker's decision (`SignOff`), and the hashes
  verified against the record (`CheckValue`).

Like the record, it holds nothing a researcher wrote and nothing of a supporting file but the
notebook's name and hash: it leaves the TRE with the bundle.
"""

from __future__ import annotations

from typing import Any

from hub.kernel.fivesafes import COMPLETED, FAILED, FiveSafesCrate, ref


def release_crate(claims: dict[str, Any], rerun: dict[str, Any] | None, tre: str, image: str) -> bytes:
    """The crate for a release record's claims and the re-run whose results back it (or None);
    `image` is the workspace image the outputs were made in."""
    rid = claims["request"]["id"]
    crate = FiveSafesCrate(
        f"Release of request {rid} of project {claims['project']}",
        "Outputs released from the TRE after automated checks and two independent reviews.",
        claims["released_at"],
        claims["project"],
        tre,
    )
    files = {f["id"]: crate.file(f["path"], f["sha256"], f["size"]) for f in claims["files"]}
    results = [ref(f) for f in files.values()]
    tre_agent = crate.publisher
    if rerun is not None:
        notebook = crate.entity(
            "#notebook",
            **{"@type": "SoftwareSourceCode", "name": rerun["notebook"], "sha256": rerun["notebook_sha256"]},
        )
        release = crate.entity(
            f"#data-release-{rerun['release']}",
            **{"@type": "Dataset", "name": f"{claims['project']} data release {rerun['release']}"},
        )
        crate.run(
            f"#rerun-{rerun['id']}",
            name=f"Sealed re-run of {rerun['notebook']} on release {rerun['release']}",
            instrument=ref(notebook),
            object=[ref(release)],
            result=results,
            agent=ref(tre_agent),
            startTime=rerun["created_at"],
            endTime=rerun["finished_at"],
            actionStatus=COMPLETED if rerun["status"] == "done" else FAILED,
        )
    else:
        workspace = crate.entity(
            "#workspace", **{"@type": "SoftwareApplication", "name": f"TRE workspace (image {image})"}
        )
        crate.run(
            f"#request-{rid}",
            name=f"Release request {rid}",
            instrument=ref(workspace),
            result=results,
            agent=ref(crate.person(claims["author"])),
            endTime=claims["submitted_at"],
            actionStatus=COMPLETED,
        )
    reproduced = (rerun or {}).get("results", {})
    for f in claims["files"]:
        i, target = f["id"], ref(files[f["id"]])
        rules = ", ".join(f"{rule}: {verdict}" for rule, verdict in f["rules"]) or "no rule applied"
        what = f"automated disclosure checks: {f['verdict']} ({rules})"
        crate.assess(
            f"#disclosure-{i}", "DisclosureCheck", target, tre_agent, f["verdict"] != "fail", what, None
        )
        if rerun is not None and str(i) in reproduced:
            res = reproduced[str(i)]
            what, ok = f"re-run {rerun['id']}: {res['outcome']}", bool(res["reproduced"])
            crate.assess(
                f"#validation-{i}", "ValidationCheck", target, tre_agent, ok, what, rerun["finished_at"]
            )
        for n, review in enumerate(f["reviews"]):
            override = " as an override of the reproduction rule" if review["override"] else ""
            ok, checker = review["decision"] == "approve", crate.person(review["checker"])
            crate.assess(
                f"#signoff-{i}-{n}",
                "SignOff",
                target,
                checker,
                ok,
                review["decision"] + override,
                review["at"],
            )
    what = "every file's SHA-256 checked against its stored copy and the signed record"
    crate.assess("#hashes", "CheckValue", {"@id": "./"}, tre_agent, True, what, claims["released_at"])
    return crate.to_bytes()

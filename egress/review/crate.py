"""The release's Five Safes RO-Crate: what was run, on which data, and every check, as linked data.

A released bundle carries `ro-crate-metadata.json` (built with the `rocrate` library) beside its
files; the signed decision record holds its SHA-256, so `tre egress verify` checks it offline with
the rest. It follows the Five Safes RO-Crate profile 0.4 (https://w3id.org/5s-crate/0.4) on top of
the Process Run Crate profile:

- the run as a `CreateAction` the root `mentions`: the platform's sealed re-run of the request's
  notebook (instrument) on the project's release (object), resulting in the released files; without
  a re-run, the author's request, made in her workspace (instrument: the workspace image);
- each check as an `AssessAction` with its Five Safes phase in `additionalType`: the automated
  disclosure checks (`DisclosureCheck`), the re-run's reproduction of each file (`ValidationCheck`),
  each checker's approval (`SignOff`), and the hashes verified against the record (`CheckValue`);
- the project as the root's `sourceOrganization`; publisher, licence and `datePublished`.

Like the record, it holds nothing a researcher wrote and nothing of a supporting file but the
notebook's name and hash: it leaves the TRE with the bundle.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

from rocrate.model.contextentity import ContextEntity
from rocrate.model.file import File
from rocrate.rocrate import ROCrate

CRATE_NAME = "ro-crate-metadata.json"
FIVE_SAFES = "https://w3id.org/5s-crate/0.4"
PROFILES = ("https://w3id.org/ro/wfrun/process/0.5", FIVE_SAFES)
SHP = "https://w3id.org/shp#"
COMPLETED, FAILED = "http://schema.org/CompletedActionStatus", "http://schema.org/FailedActionStatus"
FORMATS = {
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".json": "application/json",
    ".parquet": "application/vnd.apache.parquet",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".html": "text/html",
    ".pdf": "application/pdf",
}


def _ref(entity: Any) -> dict[str, str]:
    return {"@id": entity.id}


def release_crate(claims: dict[str, Any], rerun: dict[str, Any] | None, tre: str, image: str) -> bytes:
    """The crate for a release record's claims and the re-run whose results back it (or None);
    `image` is the workspace image the outputs were made in."""
    crate = ROCrate(version="1.1")  # what the Process Run Crate profile 0.5 builds on

    def entity(ident: str, **props: Any) -> Any:
        return crate.add(ContextEntity(crate, ident, properties=props))

    publisher = entity("#tre", **{"@type": "Organization", "name": f"Trusted research environment {tre}"})
    project = entity(f"#project-{claims['project']}", **{"@type": "Project", "name": claims["project"]})
    people: dict[str, Any] = {}

    def person(username: str) -> Any:
        if username not in people:
            people[username] = entity(f"#person-{username}", **{"@type": "Person", "name": username})
        return people[username]

    licence = entity(
        "#licence",
        **{
            "@type": "CreativeWork",
            "name": "Released under the project's data permit",
            "description": "Checked for disclosure risk and released from the TRE; no re-identification.",
        },
    )
    files = {}
    for f in claims["files"]:
        suffix = PurePosixPath(f["path"]).suffix.lower()
        files[f["id"]] = crate.add(
            File(
                crate,
                None,
                f["path"],
                properties={
                    "name": PurePosixPath(f["path"]).name,
                    "sha256": f["sha256"],
                    "contentSize": str(f["size"]),
                    "encodingFormat": FORMATS.get(suffix, "application/octet-stream"),
                },
            )
        )
    mentions = []
    if rerun is not None:
        notebook = entity(
            "#notebook",
            **{"@type": "SoftwareSourceCode", "name": rerun["notebook"], "sha256": rerun["notebook_sha256"]},
        )
        release = entity(
            f"#data-release-{rerun['release']}",
            **{"@type": "Dataset", "name": f"{claims['project']} data release {rerun['release']}"},
        )
        run = entity(
            f"#rerun-{rerun['id']}",
            **{
                "@type": "CreateAction",
                "name": f"Sealed re-run of {rerun['notebook']} on release {rerun['release']}",
                "instrument": _ref(notebook),
                "object": [_ref(release)],
                "result": [_ref(files[i]) for i in files],
                "agent": _ref(publisher),
                "startTime": rerun["created_at"],
                "endTime": rerun["finished_at"],
                "actionStatus": COMPLETED if rerun["status"] == "done" else FAILED,
            },
        )
    else:
        workspace = entity(
            "#workspace", **{"@type": "SoftwareApplication", "name": f"TRE workspace (image {image})"}
        )
        run = entity(
            f"#request-{claims['request']['id']}",
            **{
                "@type": "CreateAction",
                "name": f"Release request {claims['request']['id']}",
                "instrument": _ref(workspace),
                "result": [_ref(files[i]) for i in files],
                "agent": _ref(person(claims["author"])),
                "endTime": claims["submitted_at"],
                "actionStatus": COMPLETED,
            },
        )
    mentions.append(_ref(run))

    def assess(ident: str, phase: str, obj: Any, agent: Any, ok: bool, what: str, at: str | None) -> None:
        props = {
            "@type": "AssessAction",
            "additionalType": {"@id": SHP + phase},
            "name": f"{phase} of {obj['@id']}",
            "object": obj,
            "agent": _ref(agent),
            "actionStatus": COMPLETED if ok else FAILED,
            "description": what,
        }
        if at:
            props["endTime"] = at
        mentions.append(_ref(entity(ident, **props)))

    results = (rerun or {}).get("results", {})
    for f in claims["files"]:
        i, target = f["id"], _ref(files[f["id"]])
        rules = ", ".join(f"{rule}: {verdict}" for rule, verdict in f["rules"]) or "no rule applied"
        what = f"automated disclosure checks: {f['verdict']} ({rules})"
        assess(f"#disclosure-{i}", "DisclosureCheck", target, publisher, f["verdict"] != "fail", what, None)
        if rerun is not None and str(i) in results:
            res = results[str(i)]
            what = f"re-run {rerun['id']}: {res['outcome']}"
            ok, at = bool(res["reproduced"]), rerun["finished_at"]
            assess(f"#validation-{i}", "ValidationCheck", target, publisher, ok, what, at)
        for n, review in enumerate(f["reviews"]):
            override = " as an override of the reproduction rule" if review["override"] else ""
            what = review["decision"] + override
            ok, checker = review["decision"] == "approve", person(review["checker"])
            assess(f"#signoff-{i}-{n}", "SignOff", target, checker, ok, what, review["at"])
    what = "every file's SHA-256 checked against its stored copy and the signed record"
    assess("#hashes", "CheckValue", {"@id": "./"}, publisher, True, what, claims["released_at"])

    root = crate.root_dataset
    root["name"] = f"Release of request {claims['request']['id']} of project {claims['project']}"
    root["description"] = "Outputs released from the TRE after automated checks and two independent reviews."
    root["datePublished"] = claims["released_at"]
    root["publisher"] = _ref(publisher)
    root["license"] = _ref(licence)
    root["sourceOrganization"] = _ref(project)
    root["conformsTo"] = [{"@id": p} for p in PROFILES]
    root["mentions"] = mentions
    for p in PROFILES:
        entity(p, **{"@type": ["CreativeWork", "Profile"], "name": p.rsplit("/", 2)[-2] + " profile"})
    return json.dumps(crate.metadata.generate(), indent=1, sort_keys=True).encode()

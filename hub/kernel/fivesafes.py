"""Five Safes RO-Crates (profile 0.4, https://w3id.org/5s-crate/0.4), built with `rocrate`.

The TRE describes a release (egress.review.crate) and a job (hub.jobs.crate) this way: the run as
a `CreateAction` the root `mentions`, each check as an `AssessAction` whose `additionalType` is its
Five Safes phase (`ValidationCheck`, `DisclosureCheck`, `SignOff`, `CheckValue`...), the project as
the root's `sourceOrganization`, with publisher, licence and `datePublished`. The crates say RO-Crate
1.1 and the Process Run Crate profile 0.5, which builds on it.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

from rocrate.model.contextentity import ContextEntity
from rocrate.model.file import File
from rocrate.rocrate import ROCrate

CRATE_NAME = "ro-crate-metadata.json"
PROFILES = ("https://w3id.org/ro/wfrun/process/0.5", "https://w3id.org/5s-crate/0.4")
SHP = "https://w3id.org/shp#"
COMPLETED, FAILED = "http://schema.org/CompletedActionStatus", "http://schema.org/FailedActionStatus"
FORMATS = {
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".json": "application/json",
    ".ipynb": "application/x-ipynb+json",
    ".parquet": "application/vnd.apache.parquet",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".html": "text/html",
    ".pdf": "application/pdf",
}


def ref(entity: Any) -> dict[str, str]:
    return {"@id": entity.id}


class FiveSafesCrate:
    def __init__(self, name: str, description: str, published: str, project: str, tre: str) -> None:
        self.crate = ROCrate(version="1.1")
        self.mentions: list[dict[str, str]] = []
        self.people: dict[str, Any] = {}
        self.publisher = self.entity(
            "#tre", **{"@type": "Organization", "name": f"Trusted research environment {tre}"}
        )
        self.project = self.entity(f"#project-{project}", **{"@type": "Project", "name": project})
        licence = self.entity(
            "#licence",
            **{
                "@type": "CreativeWork",
                "name": "Under the project's data permit",
                "description": "Made and checked inside the TRE; no re-identification.",
            },
        )
        root = self.crate.root_dataset
        root["name"], root["description"], root["datePublished"] = name, description, published
        root["publisher"], root["license"] = ref(self.publisher), ref(licence)
        root["sourceOrganization"] = ref(self.project)
        root["conformsTo"] = [{"@id": p} for p in PROFILES]
        for p in PROFILES:  # the Process Run Crate profile wants each one a CreativeWork in the graph
            self.entity(
                p, **{"@type": ["CreativeWork", "Profile"], "name": p.rsplit("/", 2)[-2] + " profile"}
            )

    def entity(self, ident: str, **props: Any) -> Any:
        return self.crate.add(ContextEntity(self.crate, ident, properties=props))

    def person(self, username: str) -> Any:
        if username not in self.people:
            self.people[username] = self.entity(
                f"#person-{username}", **{"@type": "Person", "name": username}
            )
        return self.people[username]

    def file(self, path: str, sha256: str | None, size: int | None) -> Any:
        props: dict[str, Any] = {
            "name": PurePosixPath(path).name,
            "encodingFormat": FORMATS.get(PurePosixPath(path).suffix.lower(), "application/octet-stream"),
        }
        if sha256:
            props["sha256"] = sha256
        if size is not None:
            props["contentSize"] = str(size)
        return self.crate.add(File(self.crate, None, path, properties=props))

    def run(self, ident: str, **props: Any) -> Any:
        """The run request: the CreateAction the root mentions first."""
        action = self.entity(ident, **{"@type": "CreateAction", **props})
        self.mentions.insert(0, ref(action))
        return action

    def assess(
        self, ident: str, phase: str, obj: Any, agent: Any, ok: bool, what: str, at: str | None
    ) -> None:
        props = {
            "@type": "AssessAction",
            "additionalType": {"@id": SHP + phase},
            "name": f"{phase} of {obj['@id']}",
            "object": obj,
            "agent": ref(agent),
            "actionStatus": COMPLETED if ok else FAILED,
            "description": what,
        }
        if at:
            props["endTime"] = at
        self.mentions.append(ref(self.entity(ident, **props)))

    def to_bytes(self) -> bytes:
        self.crate.root_dataset["mentions"] = self.mentions
        return json.dumps(self.crate.metadata.generate(), indent=1, sort_keys=True).encode()

"""Checking a release's RO-Crate: roc-validator (in its own environment) and the Five Safes RO-Crate
profile 0.4's required entities, which no released roc-validator knows yet (from the specification,
https://w3id.org/5s-crate/0.4)."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import rocrate

ROOT = Path(__file__).resolve().parents[1]
VALIDATOR_PYTHON = ROOT / ".venv-roc/bin/python"
CONTEXT = Path(rocrate.__file__).parent / "data/ro-crate.jsonld"
SHP = "https://w3id.org/shp#"


def crate_of(bundle: Path) -> dict[str, Any]:
    with zipfile.ZipFile(bundle) as zf:
        return json.loads(zf.read("ro-crate-metadata.json"))


def validate(bundle: Path, workdir: Path, profile: str = "process-run-crate") -> dict[str, Any]:
    """roc-validator's JSON report for the bundle's crate (the bundle unpacked: files and metadata)."""
    crate = workdir / "crate"
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(crate)
    return validate_folder(crate, workdir, profile)


def validate_folder(crate: Path, workdir: Path, profile: str = "process-run-crate") -> dict[str, Any]:
    """roc-validator's JSON report for the crate in `crate` (a folder with ro-crate-metadata.json)."""
    assert VALIDATOR_PYTHON.exists(), "roc-validator is missing: `make roc` makes .venv-roc"
    out = workdir / f"{profile}.json"
    tool = ROOT / "tests/tools/roc_validate.py"
    run = subprocess.run(
        [str(VALIDATOR_PYTHON), str(tool), str(crate), str(CONTEXT), profile, str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.exists(), run.stderr[-3000:]
    return json.loads(out.read_text())


def five_safes_problems(crate: dict[str, Any]) -> list[str]:
    """What the crate lacks of the Five Safes RO-Crate profile 0.4 (empty: it conforms)."""
    graph = {e["@id"]: e for e in crate["@graph"]}
    root = graph["./"]
    problems = []
    conforms = {c["@id"] for c in _list(root.get("conformsTo"))}
    if "https://w3id.org/5s-crate/0.4" not in conforms:
        problems.append("root does not conform to https://w3id.org/5s-crate/0.4")
    for prop in ("datePublished", "publisher", "license", "sourceOrganization", "mentions"):
        if prop not in root:
            problems.append(f"root has no {prop}")
    org = graph.get(root.get("sourceOrganization", {}).get("@id"), {})
    if org.get("@type") != "Project":
        problems.append("sourceOrganization is not a Project")
    mentioned = [graph.get(m["@id"], {}) for m in _list(root.get("mentions"))]
    if not any(e.get("@type") == "CreateAction" for e in mentioned):
        problems.append("root mentions no CreateAction (the run request)")
    for action in (e for e in graph.values() if e.get("@type") == "AssessAction"):
        kind = action.get("additionalType", {}).get("@id", "")
        if not kind.startswith(SHP):
            problems.append(f"{action['@id']} has no Five Safes phase")
        for prop in ("object", "agent", "actionStatus"):
            if prop not in action:
                problems.append(f"{action['@id']} has no {prop}")
        if {"@id": action["@id"]} not in _list(root.get("mentions")):
            problems.append(f"root does not mention {action['@id']}")
    return problems


def phases(crate: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The crate's AssessActions by Five Safes phase (DisclosureCheck, SignOff, ...)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for e in crate["@graph"]:
        if e.get("@type") == "AssessAction":
            found.setdefault(e["additionalType"]["@id"].removeprefix(SHP), []).append(e)
    return found


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]

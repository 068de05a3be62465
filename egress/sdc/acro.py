"""ACRO output bundles (``results.json`` + the files it lists): ACRO's statuses become findings.

ACRO's own verdict is kept as an ``acro`` finding on each file, and our rules run on the same files
(ACRO's statistic, read from its command or FAIR statbarn, tells us what a bare CSV of values holds),
so the worse of the two wins.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from egress.sdc.model import Finding, Parsed, Regression, Table, Verdict, quoted
from egress.sdc.structure import stat_of

_STATUS: dict[str, Verdict] = {"pass": "pass", "review": "review", "fail": "fail"}
_STATBARN = {"Mode": "mode", "Position": "quantile", "Frequencies": "count", "LinearAggregations": "mean"}
_AGGFUNC = re.compile(r"aggfunc\s*=\s*\[?\s*[\"'](\w+)")


BUNDLE_KEYS = {"version", "tool", "results"}
OUTPUT_KEYS = {
    "uid", "status", "type", "properties", "files", "outcome", "command", "summary", "timestamp",
    "comments", "exception", "fair",
}  # fmt: skip
FILE_KEYS = {"name", "sdc"}
SDC_KEYS = {"summary", "cells"}
# ACRO's own text fields are quoted and checked for identifiers; beyond this size they are data.
ACRO_FIELD_LIMIT = 4000


def is_acro_results(data: Any) -> bool:
    """ACRO's structure: a ``results`` object of outputs, each with a status. Keys beside it are not
    ACRO's and are checked as data (`extra_parts`), so the shape cannot hide rows."""
    results = data.get("results") if isinstance(data, dict) else None
    return isinstance(results, dict) and all(isinstance(v, dict) and "status" in v for v in results.values())


def extra_parts(data: dict[str, Any]) -> list[tuple[str, Any]]:
    """(where, value) for everything in results.json that is not ACRO's: extra keys at any level and
    ACRO fields larger than ACRO writes them."""
    parts = [(f"key {k!r} beside the ACRO results", v) for k, v in data.items() if k not in BUNDLE_KEYS]
    for uid, output in data["results"].items():
        parts += [(f"{uid}: key {k!r}", v) for k, v in output.items() if k not in OUTPUT_KEYS]
        for k in OUTPUT_KEYS - {"files"}:
            if k in output and len(json.dumps(output[k], default=str)) > ACRO_FIELD_LIMIT:
                parts.append((f"{uid}: {k} (larger than ACRO writes it)", output[k]))
        for i, entry in enumerate(output.get("files") or []):
            if not isinstance(entry, dict):
                parts.append((f"{uid}: file entry {i + 1}", entry))
                continue
            parts += [
                (f"{uid}: file entry {i + 1} key {k!r}", v) for k, v in entry.items() if k not in FILE_KEYS
            ]
            sdc = entry.get("sdc") if isinstance(entry.get("sdc"), dict) else {}
            parts += [
                (f"{uid}: file entry {i + 1} sdc key {k!r}", v) for k, v in sdc.items() if k not in SDC_KEYS
            ]
    return parts


def acro_text(uid: str, output: dict[str, Any]) -> str:
    """ACRO's free-text fields of one output, for the identifier checks."""
    return " ".join(json.dumps(output.get(k), default=str) for k in sorted(OUTPUT_KEYS - {"files"}))


def statistic(output: dict[str, Any]) -> str | None:
    found = _AGGFUNC.search(output.get("command") or "")
    if found:
        return stat_of(found.group(1))
    statbarn = (output.get("fair") or {}).get("statbarn")
    return _STATBARN.get(statbarn) if isinstance(statbarn, str) else None


def acro_finding(uid: str, output: dict[str, Any], file_sdc: dict[str, Any] | None) -> Finding:
    status = _STATUS.get(str(output.get("status", "")).lower(), "review")
    summary = quoted(output.get("summary", ""))
    exception = (
        f"; researcher's exception request: {quoted(output['exception'])}" if output.get("exception") else ""
    )
    cells: set[tuple[int, int]] = set()
    for positions in ((file_sdc or {}).get("cells") or {}).values():
        cells.update((int(r), int(c)) for r, c in positions)
    return Finding(
        "acro",
        status,
        f"ACRO {uid} ({output.get('type', '?')}): {status}. {summary}{exception}",
        sorted(cells),
    )


def apply_statistic(parsed: Parsed, stat: str | None) -> None:
    """Give ACRO's statistic to tables whose columns did not name one (a bare ``region,bmi``)."""
    if not stat:
        return
    for item in parsed.items:
        if isinstance(item, Table) and all(s is None for s in item.col_stats) and item.row_stats is None:
            item.col_stats = [stat] * len(item.col_stats)


def regression_of(uid: str, output: dict[str, Any], name: str) -> Regression | None:
    if output.get("type") != "regression":
        return None
    dof = (output.get("properties") or {}).get("dof")
    return Regression(name, float(dof) if dof is not None else None, f"ACRO {uid} regression")


def files_of(
    results: dict[str, Any], bundle: Path
) -> list[tuple[str, dict[str, Any], Path | None, str, dict[str, Any]]]:
    """(uid, output, file path or None if refused, name as listed, file's sdc block) for every file.

    A listed name is resolved inside the bundle's folder only: ``..``, absolute paths and symlinks
    that leave it are refused (None), never read.
    """
    root = bundle.resolve()
    rows = []
    for uid, output in results["results"].items():
        for entry in output.get("files") or []:
            entry = entry if isinstance(entry, dict) else {}
            listed = str(entry.get("name", ""))
            path: Path | None = bundle / listed
            inside = bool(listed) and not Path(listed).is_absolute() and ".." not in Path(listed).parts
            if not inside or not path.resolve().is_relative_to(root):
                path = None
            sdc = entry.get("sdc") if isinstance(entry.get("sdc"), dict) else {}
            rows.append((uid, output, path, listed, sdc))
    return rows

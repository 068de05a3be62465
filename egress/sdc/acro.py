"""ACRO output bundles (``results.json`` + the files it lists): ACRO's statuses become findings.

ACRO's own verdict is kept as an ``acro`` finding on each file, and our rules run on the same files
(ACRO's statistic, read from its command or FAIR statbarn, tells us what a bare CSV of values holds),
so the worse of the two wins.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from egress.sdc.model import Finding, Parsed, Regression, Table, Verdict
from egress.sdc.structure import stat_of

_STATUS: dict[str, Verdict] = {"pass": "pass", "review": "review", "fail": "fail"}
_STATBARN = {"Mode": "mode", "Position": "quantile", "Frequencies": "count", "LinearAggregations": "mean"}
_AGGFUNC = re.compile(r"aggfunc\s*=\s*\[?\s*[\"'](\w+)")


def is_acro_results(data: Any) -> bool:
    results = data.get("results") if isinstance(data, dict) else None
    return isinstance(results, dict) and all(isinstance(v, dict) and "status" in v for v in results.values())


def statistic(output: dict[str, Any]) -> str | None:
    found = _AGGFUNC.search(output.get("command") or "")
    if found:
        return stat_of(found.group(1))
    statbarn = (output.get("fair") or {}).get("statbarn")
    return _STATBARN.get(statbarn) if isinstance(statbarn, str) else None


def acro_finding(uid: str, output: dict[str, Any], file_sdc: dict[str, Any] | None) -> Finding:
    status = _STATUS.get(str(output.get("status", "")).lower(), "review")
    summary = " ".join(str(output.get("summary", "")).split())
    exception = f"; researcher's exception request: {output['exception']}" if output.get("exception") else ""
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


def files_of(results: dict[str, Any], bundle: Path) -> list[tuple[str, dict[str, Any], Path, dict[str, Any]]]:
    """(uid, output, file path, file's sdc block) for every file an output lists."""
    rows = []
    for uid, output in results["results"].items():
        for entry in output.get("files") or []:
            rows.append((uid, output, bundle / str(entry.get("name", "")), entry.get("sdc") or {}))
    return rows

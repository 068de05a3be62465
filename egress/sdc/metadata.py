"""The metadata ``tre_notebook.sdc`` saves beside an output (``<file>.sdc.json``), and its checks.

It is written inside the researcher's container, so it is a claim, not proof: the engine uses it
only when the file's hash matches, it describes exactly the table in the file, and it is consistent
with itself (counts behind counts, sums behind means, contributions below sums). Anything else is a
finding and the metadata is ignored.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from egress.sdc.model import Finding, RuleConfig, Table
from egress.sdc.structure import norm_label, stat_of

SUFFIX = ".sdc.json"
FORMAT = "tre-sdc/1"


def sidecar_of(path: Path) -> Path:
    return path.with_name(path.name + SUFFIX)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _grid(meta: dict[str, Any], key: str, shape: tuple[int, int]) -> np.ndarray | None:
    if meta.get(key) is None:
        return None
    grid = np.array(meta[key], dtype=float)
    if grid.shape[:2] != shape:
        raise ValueError(f"{key} has shape {grid.shape[:2]}, the table {shape}")
    return grid


def _labels(values: list[Any]) -> list[str]:
    return [" / ".join(norm_label(p) for p in v) if isinstance(v, list) else norm_label(v) for v in values]


def apply(table: Table, meta: dict[str, Any], file_sha256: str, config: RuleConfig) -> list[Finding]:
    """Adopt the metadata's counts and contributions if it checks out; otherwise say why not."""
    if meta.get("format") != FORMAT:
        return [Finding("metadata", "review", f"unknown SDC metadata format {meta.get('format')!r}: ignored")]
    if meta.get("file_sha256") != file_sha256:
        return [
            Finding(
                "metadata",
                "fail",
                "the file changed after tre_notebook.sdc saved it: its metadata no "
                "longer describes it (re-run the analysis and save again)",
            )
        ]
    try:
        problems = _mismatch(table, meta)
        counts = _grid(meta, "counts", table.shape)
        sums = _grid(meta, "sums", table.shape)
        top = _grid(meta, "top", table.shape)
        minimum = _grid(meta, "minimum", table.shape)
    except (ValueError, TypeError) as exc:
        problems = [str(exc)]
    if problems:
        return [
            Finding(
                "metadata",
                "fail",
                "SDC metadata does not match the table (edited?): " + "; ".join(problems[:3]),
            )
        ]
    stats = list(meta.get("col_stats") or [meta.get("statistic")] * table.shape[1])
    # Where the file names a column's statistic, the file wins: metadata may only add what it lacks.
    named = [stat_of(label) for label in table.col_labels]
    clash = [
        f"{label!r} is a {ours} in the file, a {theirs} in its metadata"
        for label, ours, theirs in zip(table.col_labels, named, stats, strict=False)
        if ours and theirs and ours != theirs
    ]
    if clash:
        return [Finding("metadata", "fail", "SDC metadata contradicts the table: " + "; ".join(clash[:3]))]
    table.col_stats = [ours or theirs for ours, theirs in zip(named, stats, strict=False)]
    table.row_stats = None
    rounding = meta.get("rounding")
    problems = _inconsistent(table, counts, sums, top, minimum, rounding) + _unrounded(table, rounding)
    if problems:
        return [
            Finding("metadata", "fail", "SDC metadata is not self-consistent: " + "; ".join(problems[:3]))
        ]
    table.counts, table.sums, table.top, table.minimum = counts, sums, top, minimum
    table.rounding = int(rounding) if rounding else None
    table.margin_row = table.margin_col = bool(meta.get("margins"))
    return []


def _mismatch(table: Table, meta: dict[str, Any]) -> list[str]:
    problems = []
    if _labels(meta.get("index", [])) != table.row_labels:
        problems.append("row labels differ")
    if _labels(meta.get("columns", [])) != table.col_labels:
        problems.append("column labels differ")
    values = _grid(meta, "values", table.shape)
    if values is None:
        return [*problems, "no values recorded"]
    if not np.array_equal(np.isnan(values), table.hidden):
        problems.append("suppressed cells differ")
    shown = ~np.isnan(values) & ~table.hidden
    if not np.allclose(values[shown], table.values[shown], rtol=1e-9, atol=1e-9):
        problems.append("cell values differ")
    return problems


def _unrounded(table: Table, rounding: Any) -> list[str]:
    """A stated rounding base is a claim about the values: every shown count must be a multiple."""
    if not rounding:
        return []
    try:
        base = int(rounding)
    except (TypeError, ValueError):
        return [f"rounding {rounding!r} is not a whole number"]
    counts = table.values[table.is_stat("count") & ~table.hidden]
    if base < 2 or np.mod(counts, base).any():
        return [f"counts are not all multiples of the stated rounding base {base}"]
    return []


def _inconsistent(
    table: Table,
    counts: np.ndarray | None,
    sums: np.ndarray | None,
    top: np.ndarray | None,
    minimum: np.ndarray | None,
    rounding: Any,
) -> list[str]:
    if counts is None:
        return ["no counts recorded"]
    problems = []
    shown = ~table.hidden
    known = shown & ~np.isnan(counts)
    if (counts[known] < 0).any() or (counts[known] != np.round(counts[known])).any():
        problems.append("counts are not whole numbers ≥ 0")
    is_count = table.is_stat("count") & known
    slack = int(rounding) / 2 if rounding else 0
    if (np.abs(table.values[is_count] - counts[is_count]) > slack).any():
        problems.append("count cells differ from their recorded counts")
    if sums is not None:
        for stat, expected in (("mean", table.values * counts), ("sum", table.values)):
            cells = table.is_stat(stat) & known & ~np.isnan(sums)
            if not np.allclose(expected[cells], sums[cells], rtol=1e-6, atol=1e-6):
                problems.append(f"{stat} cells do not agree with their recorded sums")
    if top is not None and top.shape[2] > 1:
        ordered = np.nan_to_num(top[:, :, :-1], nan=-np.inf) >= np.nan_to_num(top[:, :, 1:], nan=-np.inf)
        if not ordered.all():
            problems.append("largest contributions are not in descending order")
    if top is not None and sums is not None and minimum is not None:
        cells = known & table.is_stat("mean", "sum") & (np.nan_to_num(minimum, nan=-1) >= 0)
        lead = np.nan_to_num(top[:, :, 0], nan=0)
        if (lead[cells] > np.abs(sums[cells]) * (1 + 1e-9) + 1e-9).any():
            problems.append("a largest contribution exceeds its cell's total")
    return problems

"""Differencing: what subtracting one frequency table from another reveals.

Compared pairwise (tables of this check with each other and with the project's earlier outputs):
- same categories (whole grid or one dimension's totals): if every difference has the same sign,
  one population may contain the other, and a difference below the threshold describes that few
  people;
- overlapping interval categories (``0-17`` vs ``0-19``) over the same population: cumulative counts
  at the two sets of cut points give the records between them;
- hidden cells that another table's totals, or its merged categories, let anyone recompute.
Rounded tables are skipped: rounding noise hides small differences.
"""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pandas as pd

from egress.sdc.model import Finding, RuleConfig, Table


def _frequency(table: Table) -> bool:
    return bool(table.values.size) and not table.rounding and bool(table.is_stat("count").all())


def _grid(table: Table) -> pd.DataFrame:
    rs, cs = table.inner()
    values = np.where(table.hidden[rs, cs], np.nan, table.values[rs, cs])
    return pd.DataFrame(values, index=table.row_labels[rs], columns=table.col_labels[cs])


def _marginals(table: Table) -> list[pd.Series]:
    """Totals along each dimension (from the margins when shown: they include hidden cells)."""
    grid, out = _grid(table), []
    if grid.shape[1] >= 1:
        rows = (
            pd.Series(
                np.where(table.hidden[: len(grid), -1], np.nan, table.values[: len(grid), -1]),
                index=grid.index,
            )
            if table.margin_col
            else grid.sum(axis=1, min_count=grid.shape[1])
            if grid.shape[1] > 1
            else grid.iloc[:, 0]
        )
        out.append(rows)
    if grid.shape[1] > 1:
        cols = (
            pd.Series(
                np.where(table.hidden[-1, : grid.shape[1]], np.nan, table.values[-1, : grid.shape[1]]),
                grid.columns,
            )
            if table.margin_row
            else grid.sum(axis=0, min_count=len(grid))
        )
        out.append(cols)
    return [m[~m.index.duplicated()] for m in out]


def _nested_difference(a: pd.Series, b: pd.Series, config: RuleConfig) -> tuple[pd.Series, float] | None:
    diff = (a - b).dropna()
    if diff.empty or not diff.any() or not ((diff >= 0).all() or (diff <= 0).all()):
        return None
    small = diff[(diff.abs() > 0) & (diff.abs() < config.threshold)]
    return (small, float(diff.abs().sum())) if not small.empty else None


def _pair_same_categories(a: Table, b: Table, config: RuleConfig) -> str | None:
    ga, gb = _grid(a), _grid(b)
    same_grid = set(ga.index) == set(gb.index) and set(ga.columns) == set(gb.columns) and ga.size > 1
    if same_grid and ga.index.is_unique and gb.index.is_unique:
        # the whole grid decides: mixed signs there mean no nesting, whatever the totals suggest
        found = _nested_difference(ga.stack(), gb.loc[ga.index, ga.columns].stack(), config)
        if not found:
            return None
        small, total = found
        cells = ", ".join(f"({r}, {c}) = {abs(v):g}" for (r, c), v in small.head(5).items())
        return f"the two tables differ by {total:g} record(s) in all; subtracting them reveals {cells}"
    for ma, mb in itertools.product(_marginals(a), _marginals(b)):
        if len(ma) > 1 and set(ma.index) == set(mb.index):
            found = _nested_difference(ma, mb.loc[ma.index], config)
            if found:
                small, total = found
                cells = ", ".join(f"{k} = {abs(v):g}" for k, v in small.head(5).items())
                return (
                    f"their totals over the same categories differ by {total:g} record(s); "
                    f"subtracting reveals {cells}"
                )
    return None


_RANGE = re.compile(r"^\s*(\d+)\s*(?:-|–|to)\s*(\d+)\s*$")
_BELOW = re.compile(r"^\s*(?:<|under|below)\s*(\d+)\s*$", re.I)
_ABOVE = re.compile(r"^\s*(?:(\d+)\s*\+|(\d+)\s*(?:and over|or more|\+)|(?:>=|≥)\s*(\d+))\s*$", re.I)
_PANDAS = re.compile(r"^\s*([\[(])\s*(-?[\d.]+|-inf)\s*,\s*([\d.]+|inf)\s*([\])])\s*$")


def _interval(label: str) -> tuple[float, float] | None:
    """Half-open integer interval [lo, hi) named by a category label."""
    if m := _RANGE.match(label):
        return float(m.group(1)), float(m.group(2)) + 1
    if m := _BELOW.match(label):
        return -math.inf, float(m.group(1))
    if m := _ABOVE.match(label):
        return float(next(g for g in m.groups() if g)), math.inf
    if m := _PANDAS.match(label):
        lo, hi = float(m.group(2)), float(m.group(3))
        return (lo + (m.group(1) == "("), hi + (m.group(4) == "]"))
    if re.fullmatch(r"\s*-?\d+\s*", label):
        return float(label), float(label) + 1
    return None


def _cumulative(series: pd.Series) -> dict[float, float] | None:
    """Records below each cut point, if the labels are contiguous intervals with known counts."""
    spans = [_interval(str(k)) for k in series.index]
    if len(spans) < 2 or any(s is None for s in spans) or series.isna().any():
        return None
    order = sorted(range(len(spans)), key=lambda i: spans[i][0])  # type: ignore[index]
    cum, running, edge = {}, 0.0, spans[order[0]][0]  # type: ignore[index]
    for i in order:
        lo, hi = spans[i]  # type: ignore[misc]
        if lo != edge:
            return None  # a gap or an overlap: not one partition of the scale
        running += float(series.iloc[i])
        cum[hi] = running
        edge = hi
    return cum


def _pair_intervals(a: Table, b: Table, config: RuleConfig) -> str | None:
    for ma, mb in itertools.product(_marginals(a), _marginals(b)):
        if set(ma.index) == set(mb.index):
            continue
        ca, cb = _cumulative(ma), _cumulative(mb)
        if not ca or not cb or max(ca.values()) != max(cb.values()):
            continue  # not the same population on the same scale
        for (x, fx), (y, fy) in itertools.product(ca.items(), cb.items()):
            d = abs(fx - fy)
            if x != y and 0 < d < config.threshold and math.isfinite(x) and math.isfinite(y):
                lo, hi = sorted((x, y))
                return (
                    f"their overlapping categories give {d:g} record(s) with values in [{lo:g}, {hi:g}) "
                    "by subtracting cumulative counts"
                )
    return None


def _pair_recompute(hidden_in: Table, totals_from: Table, config: RuleConfig) -> str | None:
    """A hidden cell alone in its row is that row's total (from another table) minus the rest."""
    grid = _grid(hidden_in)
    if not grid.isna().any().any():
        return None
    for m in _marginals(totals_from):
        for view in (grid, grid.T):
            if set(view.index) != set(m.index) or view.shape[1] < 2:
                continue
            m = m.loc[view.index]
            full = view.notna().all(axis=1)
            sums = view.sum(axis=1)
            if not full.any() or not np.allclose(sums[full], m[full]):
                continue  # not the same population
            lone = (view.isna().sum(axis=1) == 1) & m.notna()
            if lone.any():
                row = lone.idxmax()
                value = m[row] - sums[row]
                return f"the hidden cell in row {row!r} is its total there minus the rest = {value:g}"
    return None


def _pair_merged(hidden_in: Table, other: Table, config: RuleConfig) -> str | None:
    """Categories merged in one table (``C or D``) give back a hidden one of the other (``C``).

    Applies when the categories both tables share hold the same counts (same population): then
    the remaining categories of each table add up to the same total.
    """
    g1, g2 = _grid(hidden_in), _grid(other)
    if not g1.isna().any().any() or not (g1.index.is_unique and g2.index.is_unique):
        return None
    if list(g1.columns) != list(g2.columns) and not (g1.shape[1] == 1 and g2.shape[1] == 1):
        return None
    shared = g1.index.intersection(g2.index)
    only1, only2 = g1.index.difference(shared), g2.index.difference(shared)
    if shared.empty or only1.empty or only2.empty:
        return None
    for c1, c2 in zip(g1.columns, g2.columns, strict=True):
        a, b = g1[c1], g2[c2]
        same = a[shared].notna().all() and b[shared].notna().all() and (a[shared] == b[shared]).all()
        if same and b[only2].notna().all() and a[only1].isna().sum() == 1:
            value = b[only2].sum() - a[only1].sum()
            if value >= 0:
                row = a[only1].isna().idxmax()
                return (
                    f"the hidden cell ({row}, {c1}) equals the merged categories there "
                    f"({', '.join(map(str, only2))}) minus the rest = {value:g}"
                )
    return None


def differencing(tables: list[Table], config: RuleConfig) -> dict[str, list[Finding]]:
    """Findings per current table name; each names the table it combines with."""
    usable = [t for t in tables if _frequency(t)]
    out: dict[str, list[Finding]] = {}
    for a, b in itertools.combinations(usable, 2):
        if not (a.current or b.current):
            continue
        reason = (
            _pair_same_categories(a, b, config)
            or _pair_intervals(a, b, config)
            or _pair_recompute(a, b, config)
            or _pair_recompute(b, a, config)
            or _pair_merged(a, b, config)
            or _pair_merged(b, a, config)
        )
        if reason:
            for this, other in ((a, b), (b, a)):
                if this.current:
                    when = "" if other.current else " (an earlier output of this project)"
                    out.setdefault(this.name, []).append(
                        Finding("differencing", "fail", f"combined with {other.name}{when}: {reason}")
                    )
    return out

"""Safe outputs made easy: familiar analysis functions that return tables the egress checks can verify.

``crosstab``, ``pivot_table``, ``summary`` (describe-like), ``ols`` and ``logit`` take a pandas
DataFrame or a DuckDB relation. Aggregates are computed by DuckDB in one GROUP BY query that also
returns, per cell, the number of records and the two largest contributions. Results carry that
metadata, optional primary and secondary suppression and rounding, and ``save(path)`` writes the
output plus ``<path>.sdc.json`` beside it for the egress checks (keep it: it is evidence, not an output).

statsmodels is imported only by ``ols``/``logit``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

FORMAT = "tre-sdc/1"
THRESHOLD = 10
ALL = "All"
_AGG = {
    "count": "count(*)",
    "mean": "avg({x})",
    "sum": "sum({x})",
    "median": "median({x})",
    "min": "min({x})",
    "max": "max({x})",
    "mode": "mode({x})",
    "std": "stddev_samp({x})",
}
_ADDITIVE = ("count", "sum")  # margins of these can be used to recompute a hidden cell

Data = pd.DataFrame | duckdb.DuckDBPyRelation


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _run(data: Data, sql: str) -> pd.DataFrame:
    """Run ``sql`` over ``data`` exposed as the view ``t``."""
    if isinstance(data, duckdb.DuckDBPyRelation):
        return data.query("t", sql).df()
    con = duckdb.connect()
    try:
        con.register("t", data)
        return con.sql(sql).df()
    finally:
        con.close()


@dataclass
class SDCTable:
    """A table and, cell by cell, what the disclosure checks need to know about it."""

    table: pd.DataFrame
    statistics: list[str]  # per column
    counts: pd.DataFrame
    sums: pd.DataFrame | None = None
    top: np.ndarray | None = None  # (rows, cols, 2): the two largest contributions
    minimum: pd.DataFrame | None = None
    suppressed: pd.DataFrame | None = None
    margins: bool = False
    rounding: int | None = None
    threshold: int = THRESHOLD
    notes: list[str] = field(default_factory=list)

    def _repr_html_(self) -> str:
        return self.table._repr_html_()  # type: ignore[operator]

    def __repr__(self) -> str:
        return repr(self.table)

    def metadata(self, file_sha256: str) -> dict[str, Any]:
        def grid(frame: pd.DataFrame | np.ndarray | None) -> Any:
            if frame is None:
                return None
            values = np.asarray(frame, dtype=float)
            return np.where(np.isnan(values), None, values).tolist()

        index_names = [str(n) if n is not None else "" for n in self.table.index.names]
        return {
            "format": FORMAT,
            "kind": "table",
            "file_sha256": file_sha256,
            "label_names": index_names,
            "index": [[_text(p) for p in k] if isinstance(k, tuple) else _text(k) for k in self.table.index],
            "columns": [_text(c) for c in self.table.columns],
            "col_stats": self.statistics,
            "values": grid(self.table.to_numpy(dtype=float, na_value=np.nan)),
            "counts": grid(self.counts),
            "sums": grid(self.sums),
            "top": grid(self.top),
            "minimum": grid(self.minimum),
            "margins": self.margins,
            "rounding": self.rounding,
            "threshold": self.threshold,
            "notes": self.notes,
        }

    def save(self, path: str | Path) -> Path:
        """Write the table as CSV and its metadata to ``<path>.sdc.json``; returns the CSV path."""
        path = Path(path)
        self.table.to_csv(path)
        _write_sidecar(path, self.metadata(_sha256(path)))
        return path


def _text(label: Any) -> str:
    return "" if label is None or (isinstance(label, float) and np.isnan(label)) else str(label)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_sidecar(path: Path, meta: dict[str, Any]) -> None:
    path.with_name(path.name + ".sdc.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")


def _as_list(keys: str | list[str] | None) -> list[str]:
    if keys is None:
        return []
    return [keys] if isinstance(keys, str) else list(keys)


def _cube(
    data: Data, rows: list[str], cols: list[str], value: str | None, stat: str, margins: bool
) -> pd.DataFrame:
    """One GROUP BY (with grouping sets for margins): per cell its statistic, count, sum, min, top 2."""
    if stat not in _AGG:
        raise ValueError(f"unknown statistic {stat!r}; use one of {', '.join(_AGG)}")
    if stat != "count" and value is None:
        raise ValueError(f"{stat} needs values=<column>")
    keys = rows + cols
    x = f"CAST({_q(value)} AS DOUBLE)" if value else "NULL::DOUBLE"
    sets = [keys]
    if margins:
        sets += [rows, cols, []] if cols else [[]]
    grouping = ", ".join("(" + ", ".join(_q(k) for k in s) + ")" for s in sets)
    not_null = " AND ".join(f"{_q(k)} IS NOT NULL" for k in keys + ([value] if value else []))
    sql = f"""
        WITH src AS (SELECT {", ".join(_q(k) for k in keys)}, {x} AS __x FROM t WHERE {not_null})
        SELECT {", ".join(_q(k) for k in keys)},
               GROUPING({", ".join(_q(k) for k in rows)}) AS __g_rows,
               {f"GROUPING({', '.join(_q(k) for k in cols)})" if cols else "0"} AS __g_cols,
               count(*) AS __n, {_AGG[stat].format(x="__x")} AS __v, sum(__x) AS __s, min(__x) AS __lo,
               max(__x, 2)[1] AS __t1, max(__x, 2)[2] AS __t2
        FROM src GROUP BY GROUPING SETS ({grouping})
    """
    return _run(data, sql)


def _wide(
    long: pd.DataFrame, rows: list[str], cols: list[str], fields: list[str], margins: bool
) -> dict[str, pd.DataFrame]:
    """Long cube rows into aligned wide frames, margins labelled ``All`` last."""
    inner = long[(long["__g_rows"] == 0) & (long["__g_cols"] == 0)]
    out: dict[str, pd.DataFrame] = {}
    for f in fields:
        if cols:
            wide = inner.set_index(rows + cols)[f].unstack(cols).sort_index().sort_index(axis=1)
        else:
            wide = inner.set_index(rows)[[f]].sort_index()
        if margins:
            wide = _with_margins(wide, long, rows, cols, f)
        out[f] = wide
    return out


def _with_margins(
    wide: pd.DataFrame, long: pd.DataFrame, rows: list[str], cols: list[str], f: str
) -> pd.DataFrame:
    wide = wide.copy()
    all_row: Any = ALL if len(rows) == 1 else (ALL,) + ("",) * (len(rows) - 1)
    grand = long[(long["__g_rows"] != 0) & (long["__g_cols"] != 0)][f].iloc[0] if cols else None
    if cols:
        by_row = long[(long["__g_rows"] == 0) & (long["__g_cols"] != 0)].set_index(rows)[f]
        by_col = long[(long["__g_rows"] != 0) & (long["__g_cols"] == 0)].set_index(cols)[f]
        all_col: Any = ALL if len(cols) == 1 else (ALL,) + ("",) * (len(cols) - 1)
        wide.columns = wide.columns.astype(object) if len(cols) == 1 else wide.columns
        wide[all_col] = by_row.reindex(wide.index).to_numpy()
        wide.index = wide.index.astype(object) if len(rows) == 1 else wide.index
        wide.loc[all_row, :] = [*by_col.reindex(wide.columns[:-1]).to_numpy(), grand]
    else:
        total = long[long["__g_rows"] != 0][f].iloc[0]
        wide.index = wide.index.astype(object) if len(rows) == 1 else wide.index
        wide.loc[all_row, :] = [total]
    return wide


def _dominated(top: np.ndarray, sums: np.ndarray, k: float = 90.0, p: float = 10.0) -> np.ndarray:
    t1, t2 = np.nan_to_num(top[:, :, 0]), np.nan_to_num(top[:, :, 1])
    with np.errstate(invalid="ignore"):
        nk = (t1 + t2) > k / 100 * sums
        pp = (sums - t1 - t2) < p / 100 * t1
    return (nk | pp) & (sums > 0)


def complements(values: np.ndarray, primary: np.ndarray, *, rows: bool, cols: bool) -> np.ndarray:
    """Secondary suppression: every row/column with a total hides 0 or ≥2 cells (greedy, smallest)."""
    hidden = primary.copy()
    cost = np.where(values > 0, values, 1e12)
    while True:
        row_n, col_n = hidden.sum(axis=1), hidden.sum(axis=0)
        lone_rows = np.nonzero(row_n == 1)[0] if rows else []
        lone_cols = np.nonzero(col_n == 1)[0] if cols else []
        if len(lone_rows):
            i = int(lone_rows[0])
            line = np.where(hidden[i], np.inf, cost[i] - ((col_n == 1) & cols) * 1e13)
            pick = (i, int(np.argmin(line)))
        elif len(lone_cols):
            j = int(lone_cols[0])
            line = np.where(hidden[:, j], np.inf, cost[:, j] - ((row_n == 1) & rows) * 1e13)
            pick = (int(np.argmin(line)), j)
        else:
            break
        if np.isinf(line).all():
            break
        hidden[pick] = True
    return hidden & ~primary


def _table(
    data: Data,
    rows: list[str],
    cols: list[str],
    value: str | None,
    stat: str,
    *,
    margins: bool,
    suppress: bool,
    round_to: int | None,
    threshold: int,
) -> SDCTable:
    long = _cube(data, rows, cols, value, stat, margins)
    w = _wide(long, rows, cols, ["__v", "__n", "__s", "__lo", "__t1", "__t2"], margins)
    w = {k.removeprefix("__"): frame for k, frame in w.items()}
    if not cols:  # a one-way table: name its column after the statistic so any reader can tell
        name = "n" if stat == "count" else f"{value}_{stat}"
        w = {k: f.set_axis([name], axis=1) for k, f in w.items()}
    counts = w["n"].fillna(0) if stat == "count" else w["n"]
    values = counts.astype(float) if stat == "count" else w["v"].astype(float)
    top = np.stack([w["t1"].to_numpy(float), w["t2"].to_numpy(float)], axis=2) if value else None
    hidden = np.isnan(values.to_numpy(float))
    notes = []
    if suppress:
        n = counts.to_numpy(float)
        primary = hidden | ((n > 0) & (n < threshold))
        if stat in ("mean", "sum") and top is not None:
            primary |= _dominated(top, w["s"].to_numpy(float))
        if margins and stat in _ADDITIVE:
            r, c = values.shape[0] - 1, values.shape[1] - int(bool(cols))
            inner = values.to_numpy(float)[:r, :c]
            extra = complements(inner, primary[:r, :c], rows=bool(cols), cols=True)
            primary[:r, :c] |= extra
            notes.append(f"secondary suppression hid {int(extra.sum())} further cell(s)")
        notes.append(f"primary suppression at threshold {threshold} and dominance (n=2, k=90%, p=10%)")
        hidden = primary
    shown = values.mask(hidden)
    if round_to and stat == "count":
        shown = (shown / round_to).round() * round_to
        notes.append(f"counts rounded to base {round_to}")
    if stat == "count":
        shown = shown.astype("Int64")
    for frame in (shown, counts):
        frame.index.names = rows
        if len(cols) > 1:  # one header row in the CSV: "F / North"
            frame.columns = [" / ".join(map(str, c)).rstrip(" /") for c in frame.columns]
        else:
            frame.columns.names = cols or [None]
    return SDCTable(
        table=shown,
        statistics=[stat] * shown.shape[1],
        counts=counts,
        sums=w["s"] if value else None,
        top=top,
        minimum=w["lo"] if value else None,
        suppressed=pd.DataFrame(hidden, index=shown.index, columns=shown.columns),
        margins=margins,
        rounding=round_to if stat == "count" else None,
        threshold=threshold,
        notes=notes,
    )


def crosstab(
    data: Data,
    index: str | list[str],
    columns: str | list[str] | None = None,
    values: str | None = None,
    aggfunc: str = "count",
    *,
    margins: bool = False,
    suppress: bool = False,
    round_to: int | None = None,
    threshold: int = THRESHOLD,
) -> SDCTable:
    """Like ``pandas.crosstab`` over column names: counts, or ``aggfunc`` of ``values`` per cell."""
    stat = "count" if values is None else aggfunc
    return _table(
        data,
        _as_list(index),
        _as_list(columns),
        values,
        stat,
        margins=margins,
        suppress=suppress,
        round_to=round_to,
        threshold=threshold,
    )


def pivot_table(
    data: Data,
    values: str,
    index: str | list[str],
    columns: str | list[str] | None = None,
    aggfunc: str = "mean",
    *,
    margins: bool = False,
    suppress: bool = False,
    round_to: int | None = None,
    threshold: int = THRESHOLD,
) -> SDCTable:
    """Like ``pandas.pivot_table`` with one value column and one statistic."""
    return _table(
        data,
        _as_list(index),
        _as_list(columns),
        values,
        aggfunc,
        margins=margins,
        suppress=suppress,
        round_to=round_to,
        threshold=threshold,
    )


SUMMARY_STATS = ("count", "mean", "std", "min", "median", "max")


def summary(
    data: Data,
    columns: str | list[str],
    by: str | list[str] | None = None,
    stats: tuple[str, ...] | list[str] = SUMMARY_STATS,
    *,
    suppress: bool = False,
    threshold: int = THRESHOLD,
) -> SDCTable:
    """A ``describe``-like table: one row per group (or one row), a ``<column>_<stat>`` column each."""
    names, keys = _as_list(columns), _as_list(by)
    parts = []
    for c in names:
        x = f"CAST({_q(c)} AS DOUBLE)"
        parts.append(f"count({x}) AS {_q(c + '|n')}, sum({x}) AS {_q(c + '|s')}, min({x}) AS {_q(c + '|lo')}")
        parts.append(f"max({x}, 2)[1] AS {_q(c + '|t1')}, max({x}, 2)[2] AS {_q(c + '|t2')}")
        parts += [f"{_AGG[s].format(x=x)} AS {_q(c + '|' + s)}" for s in stats if s != "count"]
    group = (
        f"GROUP BY {', '.join(_q(k) for k in keys)} ORDER BY {', '.join(_q(k) for k in keys)}" if keys else ""
    )
    select_keys = "".join(f"{_q(k)}, " for k in keys)
    out = _run(data, f"SELECT {select_keys}{', '.join(parts)} FROM t {group}")
    out = out.set_index(keys) if keys else out.set_axis(["all records"], axis=0)
    labels, stat_of, cells = [], [], {}
    for c in names:
        for s in stats:
            label = f"{c}_n" if s == "count" else f"{c}_{s}"
            labels.append(label)
            stat_of.append(s)
            cells[label] = (c, s)
    n = pd.DataFrame({lab: out[f"{c}|n"].to_numpy(float) for lab, (c, _) in cells.items()}, index=out.index)
    values = pd.DataFrame(
        {lab: out[f"{c}|n" if s == "count" else f"{c}|{s}"].to_numpy(float) for lab, (c, s) in cells.items()},
        index=out.index,
    )
    sums = pd.DataFrame(
        {lab: out[f"{c}|s"].to_numpy(float) for lab, (c, _) in cells.items()}, index=out.index
    )
    low = pd.DataFrame(
        {lab: out[f"{c}|lo"].to_numpy(float) for lab, (c, _) in cells.items()}, index=out.index
    )
    top = np.stack(
        [np.column_stack([out[f"{c}|t{i}"].to_numpy(float) for c, _ in cells.values()]) for i in (1, 2)],
        axis=2,
    )
    hidden = np.isnan(values.to_numpy(float))
    if suppress:
        small = (n.to_numpy() > 0) & (n.to_numpy() < threshold)
        dominated = _dominated(top, sums.to_numpy(float)) & np.isin(stat_of, ["mean", "sum"])[None, :]
        hidden |= small | dominated
    return SDCTable(
        table=values.mask(hidden),
        statistics=stat_of,
        counts=n,
        sums=sums,
        top=top,
        minimum=low,
        suppressed=pd.DataFrame(hidden, index=values.index, columns=values.columns),
        threshold=threshold,
    )


@dataclass
class RegressionResult:
    """A fitted model, its coefficient table and residual degrees of freedom."""

    result: Any  # statsmodels results
    table: pd.DataFrame
    df_resid: float
    model: str

    def summary(self) -> Any:
        return self.result.summary()

    def save(self, path: str | Path) -> Path:
        """``.txt`` writes the statsmodels summary; otherwise a CSV coefficient table with ``df_resid``."""
        path = Path(path)
        if path.suffix.lower() == ".txt":
            path.write_text(str(self.result.summary()), encoding="utf-8")
        else:
            self.table.assign(df_resid=self.df_resid).to_csv(path)
        meta = {
            "format": FORMAT,
            "kind": "regression",
            "model": self.model,
            "file_sha256": _sha256(path),
            "df_resid": self.df_resid,
            "nobs": float(self.result.nobs),
        }
        _write_sidecar(path, meta)
        return path


def _fit(kind: str, data: Data, formula: str, **kwargs: Any) -> RegressionResult:
    import statsmodels.formula.api as smf  # heavy: only regression needs it

    frame = data.df() if isinstance(data, duckdb.DuckDBPyRelation) else data
    model = smf.ols(formula, frame, **kwargs) if kind == "ols" else smf.logit(formula, frame, **kwargs)
    fitted = model.fit() if kind == "ols" else model.fit(disp=0)
    coef = pd.DataFrame(
        {
            "coef": fitted.params,
            "std err": fitted.bse,
            "P>|z|" if kind == "logit" else "P>|t|": fitted.pvalues,
        }
    )
    ci = fitted.conf_int()
    coef["[0.025"], coef["0.975]"] = ci[0], ci[1]
    return RegressionResult(fitted, coef, float(fitted.df_resid), kind.upper())


def ols(data: Data, formula: str, **kwargs: Any) -> RegressionResult:
    """Ordinary least squares with a patsy formula (``"y ~ x + C(group)"``)."""
    return _fit("ols", data, formula, **kwargs)


def logit(data: Data, formula: str, **kwargs: Any) -> RegressionResult:
    """Logistic regression with a patsy formula."""
    return _fit("logit", data, formula, **kwargs)

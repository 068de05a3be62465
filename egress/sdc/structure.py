"""Turn a DataFrame as read from a file into a ``Table``: labels, body, statistics, margins, counts.

Pandas writes the index first; crosstabs may end with an ``All`` row and column; group-by tables
carry a count column (``n``, ``count``, ``N``, ``freq``) beside their statistics. Suppressed cells are
blank or a marker such as ``<10`` or ``*``. All work is column-wise (vectorised), never per row.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from egress.sdc.model import RuleConfig, Table

MARGIN_LABELS = {"all", "total", "totals", "overall", "grand total"}
_MARKER = re.compile(
    r"^\s*(<\s*\d+(\.\d+)?|\*+|c|x|\.\.|-|–|suppressed|redacted|n/?a|nan|null|none)?\s*$", re.I
)
_STAT_WORDS = {
    "n": "count",
    "count": "count",
    "counts": "count",
    "freq": "count",
    "frequency": "count",
    "size": "count",
    "number": "count",
    "num": "count",
    "nobs": "count",
    "mean": "mean",
    "avg": "mean",
    "average": "mean",
    "sum": "sum",
    "median": "median",
    "p50": "median",
    "q50": "median",
    "50%": "median",
    "min": "min",
    "minimum": "min",
    "max": "max",
    "maximum": "max",
    "mode": "mode",
    "std": "std",
    "sd": "std",
    "stddev": "std",
    "var": "std",
    "variance": "std",
    "sem": "std",
    "pct": "percent",
    "percent": "percent",
    "percentage": "percent",
    "proportion": "percent",
    "prop": "percent",
    "rate": "percent",
    "%": "percent",
}
_PROBE = 2000  # rows looked at before parsing a whole text column as numbers
_TOKEN = re.compile(r"\d+(?:\.\d+)?%|[a-z0-9]+|%")
_QUANTILE = re.compile(r"^(\d{1,2}(\.\d+)?%|[pq]\d{1,2}|q[1-3])$")


def stat_of(name: object) -> str | None:
    """The statistic a column or row name announces (last recognised token wins: ``bmi_mean``)."""
    tokens = _TOKEN.findall(str(name).strip().lower())
    for token in reversed(tokens):
        if token in _STAT_WORDS:
            return _STAT_WORDS[token]
        if _QUANTILE.match(token):
            return "quantile"
    return None


def numeric_body(column: pd.Series) -> tuple[np.ndarray, np.ndarray, bool]:
    """Values as float, a hidden-cell mask, and whether the column is numeric apart from markers."""
    if pd.api.types.is_bool_dtype(column):
        return column.astype(float).to_numpy(), np.zeros(len(column), bool), False
    if pd.api.types.is_numeric_dtype(column):
        values = column.to_numpy(dtype=float, na_value=np.nan)
        return values, np.isnan(values), True
    text = column.astype("string")
    head = text.iloc[:_PROBE].dropna()
    if len(head) and not _numeric_or_marker(head).all():
        return np.full(len(column), np.nan), np.ones(len(column), bool), False  # text: skip the full parse
    values = pd.to_numeric(text.str.replace(",", "", regex=False).str.strip(), errors="coerce")
    values = values.to_numpy(dtype=float, na_value=np.nan)
    missing = np.isnan(values)
    markers = text[missing].fillna("").str.match(_MARKER).to_numpy(dtype=bool, na_value=True)
    # all markers still makes a (fully suppressed) numeric column, if any marker is more than a blank
    stated = text[missing].fillna("").str.strip().ne("").any()
    numeric = bool(markers.all()) and (not bool(missing.all()) or bool(stated))
    return values, missing, numeric


def _numeric_or_marker(text: pd.Series) -> pd.Series:
    cleaned = text.str.replace(",", "", regex=False).str.strip()
    return pd.to_numeric(cleaned, errors="coerce").notna() | cleaned.str.match(_MARKER).fillna(True)


def _is_integer_like(values: np.ndarray) -> bool:
    seen = values[~np.isnan(values)]
    return bool(seen.size) and bool(np.all(seen == np.round(seen)))


def _drop_range_index(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The frame without a written 0..n-1 index column, and how many leading columns were dropped."""
    first = str(frame.columns[0]) if len(frame.columns) else ""
    if len(frame.columns) > 1 and (first == "" or first.startswith("Unnamed: 0")):
        col = frame.iloc[:, 0]
        if pd.api.types.is_integer_dtype(col) and np.array_equal(col.to_numpy(), np.arange(len(frame))):
            return frame.iloc[:, 1:], 1
    return frame, 0


def _label_count(frame: pd.DataFrame, numeric: list[bool], integer: list[bool]) -> int:
    """How many leading columns are labels (the written index or group-by keys)."""
    cols = list(frame.columns)
    stat_at = next((i for i, c in enumerate(cols) if i > 0 and numeric[i] and stat_of(c)), None)
    if stat_at is not None and all(not numeric[i] or integer[i] for i in range(stat_at)):
        # "smoker, Y, N": a unique first column followed by numbers is a crosstab whose index came first
        crosstab_like = stat_at >= 2 and frame.iloc[:, 0].is_unique and all(numeric[1:stat_at])
        return 1 if crosstab_like else stat_at
    leading = 0
    while leading < len(cols) and not numeric[leading]:
        leading += 1
    return max(leading, 1) if len(cols) > 1 else 0


def _labels(frame: pd.DataFrame) -> list[str]:
    if frame.shape[1] == 0:
        return [str(i) for i in range(len(frame))]
    parts = [_label_text(frame.iloc[:, i]) for i in range(frame.shape[1])]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + " / " + part
    return joined.tolist()


def _label_text(column: pd.Series) -> pd.Series:
    """Label column as text, whole floats without ``.0`` (as ``norm_label``), vectorised."""
    if pd.api.types.is_float_dtype(column):
        values = column.to_numpy(dtype=float, na_value=np.nan)
        if np.all(np.isnan(values) | (values == np.round(values))):
            column = column.astype("Int64")
    text = column.astype("string").fillna("")
    return text.str.strip() if pd.api.types.is_string_dtype(column) else text


def norm_label(value: object) -> str:
    """Labels compare as text; ``1.0`` and ``1`` are the same category."""
    text = str(value).strip()
    if re.fullmatch(r"-?\d+\.0+", text):
        return text.split(".")[0]
    return text


def _detect_rounding(values: np.ndarray, counts_mask: np.ndarray, config: RuleConfig) -> int | None:
    seen = values[counts_mask & ~np.isnan(values)]
    nonzero = seen[seen != 0]
    if nonzero.size < 6:  # a few round numbers happen by chance; rounding must not switch checks off
        return None
    for base in config.rounding_bases:
        if np.mod(nonzero[:1000], base).any():  # most tables are not rounded: a first look settles it
            continue
        if np.all(np.mod(nonzero, base) == 0) and np.unique(nonzero).size >= 4:
            return base
    return None


def interpret(frame: pd.DataFrame, name: str, config: RuleConfig, *, label_count: int | None = None) -> Table:
    """Read the structure of ``frame``; ``label_count`` overrides label detection (from metadata)."""
    row_offset = int(frame.attrs.get("row_offset", 0))
    shift = int(frame.attrs.get("col_shift", 0))
    frame, dropped = _drop_range_index(frame.reset_index(drop=True))
    shift += dropped
    # Kept on the frame, so a second reading of it (with the metadata's labels) keeps file positions.
    frame.attrs.update(row_offset=row_offset, col_shift=shift)
    frame.columns = [str(c) for c in frame.columns]
    parsed = [numeric_body(frame.iloc[:, i]) for i in range(frame.shape[1])]
    numeric = [p[2] for p in parsed]
    integer = [p[2] and _is_integer_like(p[0]) for p in parsed]
    n_labels = _label_count(frame, numeric, integer) if label_count is None else label_count
    body_idx = [i for i in range(n_labels, frame.shape[1]) if numeric[i]]
    labels = _labels(frame.iloc[:, :n_labels])
    col_labels = [norm_label(frame.columns[i]) for i in body_idx]
    n_rows = len(frame)
    values = np.column_stack([parsed[i][0] for i in body_idx]) if body_idx else np.empty((n_rows, 0))
    hidden = np.column_stack([parsed[i][1] for i in body_idx]) if body_idx else np.empty((n_rows, 0), bool)

    col_stats: list[str | None] = [stat_of(c) for c in col_labels]
    row_stats: list[str | None] | None = None
    # statistics as rows (describe) only in short tables; never map a million labels one by one
    first_labels = (
        frame.iloc[:40, 0].astype("string").fillna("").tolist() if n_labels and n_rows <= 40 else []
    )
    mapped = [stat_of(v) if str(v).strip().lower() not in MARGIN_LABELS else None for v in first_labels]
    if "count" in mapped and sum(m is not None for m in mapped) >= 2:  # describe(): statistics as rows
        row_stats, col_stats = mapped, [None] * len(col_labels)
    elif values.size and all(s in (None, "count") for s in col_stats):
        visible = values[~hidden]
        if visible.size and np.all(visible >= 0) and np.all(visible == np.round(visible)):
            col_stats = ["count"] * len(col_labels)  # a frequency table: every cell is a count

    margin_row = bool(n_rows > 1 and labels and labels[-1].split(" / ")[0].strip().lower() in MARGIN_LABELS)
    margin_col = bool(len(col_labels) > 1 and col_labels[-1].strip().lower() in MARGIN_LABELS)
    table = Table(
        name=name,
        frame=frame,
        row_labels=labels,
        col_labels=col_labels,
        label_names=[str(c) for c in frame.columns[:n_labels]],
        values=values,
        hidden=hidden,
        col_stats=col_stats,
        row_stats=row_stats,
        margin_row=margin_row,
        margin_col=margin_col,
        row_offset=row_offset,
        col_positions=[i + shift for i in body_idx],
    )
    table.counts = _counts(table)
    table.counts_in_file = bool(np.isfinite(table.counts).any())
    table.rounding = _detect_rounding(values, table.is_stat("count"), config)
    return table


def _counts(table: Table) -> np.ndarray:
    """Records behind each cell, from count cells, a count row (describe) or matching count columns."""
    counts = np.full(table.shape, np.nan)
    if table.row_stats is None:  # column by column: no cell masks over millions of rows
        for j, stat in enumerate(table.col_stats):
            if stat == "count":
                counts[:, j] = table.values[:, j]
    else:
        is_count = table.is_stat("count")
        counts[is_count] = table.values[is_count]
        fill = ~is_count
        count_rows = [i for i, s in enumerate(table.row_stats) if s == "count"]
        if count_rows:
            per_col = table.values[count_rows[0], :]
            counts[fill] = np.broadcast_to(per_col[None, :], table.shape)[fill]
        return counts
    count_cols = [j for j, s in enumerate(table.col_stats) if s == "count"]
    if not count_cols or len(count_cols) == len(table.col_stats):
        return counts
    keys = {_stem(table.col_labels[j]): j for j in count_cols}
    for j, stat in enumerate(table.col_stats):
        if stat == "count":
            continue
        source = keys.get(_stem(table.col_labels[j]), count_cols[0] if len(count_cols) == 1 else None)
        if source is not None:
            counts[:, j] = table.values[:, source]
    return counts


def _stem(name: str) -> str:
    """A column name without its statistic word: ``bmi_mean`` and ``bmi_n`` share ``bmi``."""
    tokens = [t for t in _TOKEN.findall(name.lower()) if t not in _STAT_WORDS and not _QUANTILE.match(t)]
    return " ".join(tokens)

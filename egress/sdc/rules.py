"""Disclosure rules over one parsed table: pure functions from (Table, RuleConfig) to findings.

Every rule works on whole arrays (NumPy / pandas column operations) so a table with millions of
cells is checked in the time it takes to read it.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from egress.sdc.model import CheckContext, Finding, Regression, RuleConfig, Table, Text, variable_name

SINGLE_VALUE_STATS = ("min", "max", "median", "mode", "quantile")
MAGNITUDE_STATS = ("mean", "sum")


def _cells(mask: np.ndarray, config: RuleConfig) -> list[tuple[int, int]]:
    rows, cols = np.nonzero(mask)
    limit = config.max_cells_listed
    return list(zip(rows[:limit].tolist(), cols[:limit].tolist(), strict=True))


def _where(table: Table, mask: np.ndarray, config: RuleConfig) -> str:
    """Name a few cells by their labels so a person can find them."""
    rows, cols = np.nonzero(mask)
    names = [
        f"({table.row_labels[r]}, {table.col_labels[c]})" for r, c in zip(rows[:5], cols[:5], strict=True)
    ]
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    return ", ".join(names) + more


def threshold(table: Table, config: RuleConfig) -> list[Finding]:
    if table.counts is None or table.values.size == 0:
        return []
    visible = ~table.hidden
    with np.errstate(invalid="ignore"):
        small = visible & (table.counts > 0) & (table.counts < config.threshold)
    findings = []
    if small.any():
        findings.append(
            Finding(
                "threshold",
                "fail",
                f"{int(small.sum())} cell(s) rest on fewer than {config.threshold} records: "
                f"{_where(table, small, config)}"
                + (
                    f" (values rounded to base {table.rounding} are still below the threshold)"
                    if table.rounding
                    else ""
                ),
                _cells(small, config),
            )
        )
    unknown = visible & np.isnan(table.counts)
    if unknown.any():
        findings.append(
            Finding(
                "threshold",
                "review",
                f"the number of records behind {int(unknown.sum())} cell(s) is unknown, so the threshold of "
                f"{config.threshold} cannot be checked; add a count column or save with tre_notebook.sdc",
                _cells(unknown, config),
            )
        )
    return findings


def zeros(table: Table, config: RuleConfig) -> list[Finding]:
    if not config.zeros or table.values.size == 0:
        return []
    zero = table.is_stat("count") & ~table.hidden & (table.values == 0)
    if not zero.any():
        return []
    note = (
        f"; values are rounded to base {table.rounding}, so a 0 may hide a few records"
        if table.rounding
        else ""
    )
    return [
        Finding(
            "zeros",
            "review",
            f"{int(zero.sum())} zero cell(s) in a frequency table: {_where(table, zero, config)}; "
            "a zero reveals that nobody in the group has the attribute unless it is structural "
            f"(justify it){note}",
            _cells(zero, config),
        )
    ]


def _bounded(table: Table, config: RuleConfig, context: CheckContext, cells: np.ndarray) -> np.ndarray:
    """Mean/sum cells that provably pass the n,k and p% rules without knowing their contributions.

    The proof needs, for the cell's variable, bounds [lo, hi] with lo >= 0 from the project's release
    (every contribution lies in them) and the number of contributions printed in the table itself
    (a count the researcher's metadata only claims is not evidence). With total = n * mean (or the
    sum), no n largest contributions exceed n * hi: the n,k rule holds if n * hi <= k% of the total,
    and the p% rule if total - 2 * hi >= p% of hi.
    """
    proven = np.zeros(table.shape, dtype=bool)
    if not context.bounds or not table.counts_in_file or table.counts is None or table.row_stats is not None:
        return proven
    n_dom, k, p = config.dominance_n, config.dominance_k / 100, config.p_percent / 100
    for j, stat in enumerate(table.col_stats):
        found = context.bounds.get(variable_name(table.col_labels[j])) if stat in MAGNITUDE_STATS else None
        if found is None or found[0] < 0 or found[1] <= 0:
            continue
        high = found[1]
        counts, values = table.counts[:, j], table.values[:, j]
        with np.errstate(invalid="ignore"):
            total = counts * values if stat == "mean" else values
            ok = np.isfinite(total) & (counts >= 1)
            ok &= (n_dom * high <= k * total) & (total - 2 * high >= p * high)
        proven[:, j] = ok
    return proven & cells


def dominance(table: Table, config: RuleConfig, context: CheckContext | None = None) -> list[Finding]:
    cells = table.is_stat(*MAGNITUDE_STATS) & ~table.hidden
    if not cells.any():
        return []
    if table.top is None or table.sums is None:
        proven = _bounded(table, config, context or CheckContext(), cells)
        unproven = cells & ~proven
        findings = []
        if proven.any():
            findings.append(
                Finding(
                    "dominance",
                    "pass",
                    f"{int(proven.sum())} sum/mean cell(s) cannot be dominated: each aggregates enough "
                    "values (as counted in the table) of a variable whose values in the project's data "
                    "all lie within known non-negative bounds",
                    _cells(proven, config),
                )
            )
        if unproven.any():
            findings.append(
                Finding(
                    "dominance",
                    "review",
                    f"{int(unproven.sum())} sum/mean cell(s) without known contributions: the n,k and p% "
                    "dominance rules cannot be checked; save the table with tre_notebook.sdc so its "
                    "largest contributions travel with it",
                    _cells(unproven, config),
                )
            )
        return findings
    findings = []
    negative = (
        cells & (np.nan_to_num(table.minimum, nan=0.0) < 0) if table.minimum is not None else cells & False
    )
    if negative.any():
        findings.append(
            Finding(
                "dominance",
                "review",
                f"{int(negative.sum())} cell(s) have negative contributions, so dominance is undefined: "
                f"{_where(table, negative, config)}",
                _cells(negative, config),
            )
        )
    top = np.nan_to_num(table.top, nan=0.0)
    total = table.sums
    n = min(config.dominance_n, top.shape[2])
    with np.errstate(invalid="ignore", divide="ignore"):
        nk = (top[:, :, :n].sum(axis=2) > config.dominance_k / 100 * total) & (total > 0)
        rest = total - top[:, :, 0] - (top[:, :, 1] if top.shape[2] > 1 else 0)
        pp = (rest < config.p_percent / 100 * top[:, :, 0]) & (total > 0)
    bad = cells & ~negative & (nk | pp)
    if bad.any():
        findings.append(
            Finding(
                "dominance",
                "fail",
                f"{int(bad.sum())} cell(s) dominated by their largest contributors (n={config.dominance_n}, "
                f"k={config.dominance_k:g}% or p={config.p_percent:g}%): {_where(table, bad, config)}",
                _cells(bad, config),
            )
        )
    return findings


def extremes(table: Table, config: RuleConfig) -> list[Finding]:
    cells = table.is_stat(*SINGLE_VALUE_STATS) & ~table.hidden
    if not cells.any():
        return []
    counts = table.counts if table.counts is not None else np.full(table.shape, np.nan)
    with np.errstate(invalid="ignore"):
        few = cells & (counts < config.threshold)
    findings = []
    if few.any():
        findings.append(
            Finding(
                "extremes",
                "fail",
                f"{int(few.sum())} minimum/maximum/median/mode cell(s) over fewer than "
                f"{config.threshold} records show a person's own value: {_where(table, few, config)}",
                _cells(few, config),
            )
        )
    rest = cells & ~few
    if rest.any():
        findings.append(
            Finding(
                "extremes",
                "review",
                f"{int(rest.sum())} minimum/maximum/median/mode cell(s) each show one record's value: "
                "a checker must confirm none identifies a person",
                _cells(rest, config),
            )
        )
    return findings


def rounding(table: Table, config: RuleConfig) -> list[Finding]:
    if not table.rounding:
        return []
    return [
        Finding(
            "rounding",
            "pass",
            f"counts are rounded to base {table.rounding}: recomputed cells and differences are uncertain by "
            f"±{table.rounding // 2} per cell, small rounded cells still fail the threshold",
        )
    ]


def secondary_suppression(table: Table, config: RuleConfig) -> list[Finding]:
    """With margins, a lone hidden cell in a row or column is the total minus the rest."""
    if not (table.margin_row or table.margin_col) or table.rounding or table.values.size == 0:
        return []
    if not table.is_stat("count").all():
        return []
    rs, cs = table.inner()
    values, hidden = table.values[rs, cs], table.hidden[rs, cs]
    findings = []
    revealed = _recomputable(table, values, hidden)
    if revealed:
        cells = [rc for rc, _ in revealed]
        shown = ", ".join(
            f"({table.row_labels[r]}, {table.col_labels[c]}) = {v:g}" for (r, c), v in revealed[:5]
        )
        findings.append(
            Finding(
                "secondary_suppression",
                "fail",
                f"{len(revealed)} suppressed cell(s) can be recomputed from the margins: {shown}",
                cells,
            )
        )
    with np.errstate(invalid="ignore"):
        primary = hidden | ((values > 0) & (values < config.threshold))
    extra = complements(values, primary, rows=table.margin_col, cols=table.margin_row)
    if extra.any():
        findings.append(
            Finding(
                "secondary_suppression",
                "fail",
                f"suppressing the small cells is not enough: with the totals shown, also suppress "
                f"{int(extra.sum())} cell(s) so hidden cells cannot be recomputed: "
                f"{_where(table, extra, config)}",
                _cells(extra, config),
            )
        )
    return findings


def _recomputable(
    table: Table, values: np.ndarray, hidden: np.ndarray
) -> list[tuple[tuple[int, int], float]]:
    out: dict[tuple[int, int], float] = {}
    if table.margin_col:  # row totals in the last column
        totals, total_hidden = table.values[: values.shape[0], -1], table.hidden[: values.shape[0], -1]
        for r in np.nonzero((hidden.sum(axis=1) == 1) & ~total_hidden)[0]:
            rest = totals[r] - np.nansum(np.where(hidden[r], np.nan, values[r]))
            if rest > 0:
                out[(int(r), int(np.argmax(hidden[r])))] = float(rest)
    if table.margin_row:  # column totals in the last row
        totals, total_hidden = table.values[-1, : values.shape[1]], table.hidden[-1, : values.shape[1]]
        for c in np.nonzero((hidden.sum(axis=0) == 1) & ~total_hidden)[0]:
            rest = totals[c] - np.nansum(np.where(hidden[:, c], np.nan, values[:, c]))
            if rest > 0:
                out[(int(np.argmax(hidden[:, c])), int(c))] = float(rest)
    return sorted(out.items())


def complements(values: np.ndarray, primary: np.ndarray, *, rows: bool, cols: bool) -> np.ndarray:
    """Cells to suppress beside ``primary`` so every row/column with totals hides 0 or ≥2 cells.

    Greedy: while some line hides exactly one cell, hide one more in it, preferring a cell whose
    crossing line also hides exactly one (it mends both), then the smallest non-zero value.
    Returns the added cells.
    """
    hidden = primary.copy()
    cost = np.where(values > 0, values, 1e12)  # NaN and zero cells last
    while True:
        row_n, col_n = hidden.sum(axis=1), hidden.sum(axis=0)
        lone_rows = np.nonzero(row_n == 1)[0] if rows else np.array([], int)
        lone_cols = np.nonzero(col_n == 1)[0] if cols else np.array([], int)
        if lone_rows.size:
            i = int(lone_rows[0])
            crossing = (col_n == 1) if cols else np.zeros_like(col_n, bool)
            line_cost = np.where(hidden[i], np.inf, cost[i] - crossing * 1e13)
            pick = (i, int(np.argmin(line_cost)))
        elif lone_cols.size:
            j = int(lone_cols[0])
            crossing = (row_n == 1) if rows else np.zeros_like(row_n, bool)
            line_cost = np.where(hidden[:, j], np.inf, cost[:, j] - crossing * 1e13)
            pick = (int(np.argmin(line_cost)), j)
        else:
            break
        if np.isinf(line_cost).all():
            break  # a one-cell line: nothing else to hide there (its total must go instead)
        hidden[pick] = True
    return hidden & ~primary


_ID_NAME = re.compile(
    r"(^|[_\s-])(id|ids|identifier|pseudonym|pseudo|nhs|nhsno|nhs_number|mrn|chi|ssn|patient|person|subject)"
    r"([_\s-]|$)",
    re.I,
)
_ID_VALUE = re.compile(
    r"^([0-9a-f]{16,}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\d{10})$", re.I
)
_FULL_DATE = re.compile(r"^\s*(\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{4})([ T]\d{2}:\d{2}(:\d{2})?)?")
_BIRTH = re.compile(r"(dob|birth|born)", re.I)
_SAMPLE = 20_000  # shape tests on big columns look at a sample; exact matching scans everything


def _sample(column: pd.Series) -> pd.Series:
    return column if len(column) <= _SAMPLE else column.iloc[:: len(column) // _SAMPLE]  # evenly spread


def microdata(table: Table, config: RuleConfig, context: CheckContext) -> list[Finding]:
    """Row-level data by shape and content, not by column names: identifiers, known pseudonyms, dates,
    free text and more rows than an aggregate has, read along the rows and, for a wide table, along
    the columns too (a transposed extract has one column per person)."""
    frame = table.frame
    # Counts claimed only by a sidecar never relax these checks: the sidecar is the researcher's word.
    has_counts = table.counts_in_file
    labels = set(table.label_names) if has_counts else set()
    findings = _column_findings(frame, labels, has_counts, config)
    n_rows, n_cols = frame.shape
    if n_cols >= 20 and n_cols > n_rows:
        findings += _transposed_findings(frame, config)
    findings += _known_identifiers(table, context)
    findings += _measured_labels(table)
    if n_rows > config.max_aggregate_rows and not has_counts:
        findings.append(
            Finding(
                "microdata",
                "fail",
                f"{n_rows} rows and no counts: more rows than a table of aggregates plausibly has "
                f"(limit {config.max_aggregate_rows}); this looks like row-level data",
            )
        )
    return findings


def _column_findings(
    frame: pd.DataFrame, labels: set[str], has_counts: bool, config: RuleConfig
) -> list[Finding]:
    findings = []
    n = len(frame)
    for name in frame.columns:
        column = frame[name]
        textual = not pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_datetime64_any_dtype(
            column
        )
        id_like = (_ID_NAME.search(str(name)) and name not in labels) or (
            _sample(column.astype("string")).str.match(_ID_VALUE).mean() > 0.9
            if textual
            else _nhs_numbers(column)
        )
        if n >= 5 and id_like and column.is_unique:  # uniqueness last: it hashes the whole column
            findings.append(
                Finding("microdata", "fail", f"column {name!r} holds a unique identifier per row")
            )
            continue
        dates = pd.api.types.is_datetime64_any_dtype(column) or (
            textual
            and bool(len(column))
            and _sample(column.astype("string")).str.match(_FULL_DATE).mean() > 0.9
        )
        if dates and n >= 2 and (_BIRTH.search(str(name)) or not has_counts):
            findings.append(Finding("microdata", "fail", f"column {name!r} holds full dates per row"))
            continue
        if textual and name not in labels and n >= 3:
            sample = _sample(column.astype("string").dropna())
            words = sample.str.count(r"\s+") + 1
            if (
                len(sample)
                and words.median() >= config.free_text_words
                and sample.nunique() >= 0.5 * len(sample)
            ):
                findings.append(Finding("microdata", "fail", f"column {name!r} holds free text"))
    return findings


def _measured_labels(table: Table) -> list[Finding]:
    """Rows labelled by a measurement (``bmi 27.31``) are records, not categories, whatever the counts."""
    findings = []
    for name in table.label_names:
        column = table.frame[name]
        if not pd.api.types.is_float_dtype(column) or len(column) < 100:
            continue
        values = column.dropna()
        if (values != values.round()).mean() > 0.5 and values.nunique() >= 50:
            findings.append(
                Finding(
                    "microdata",
                    "fail",
                    f"rows are labelled by the measured values of {name!r} ({values.nunique()} distinct): "
                    "one row per record, not a table of categories",
                )
            )
    return findings


def _transposed_findings(frame: pd.DataFrame, config: RuleConfig) -> list[Finding]:
    """A wide table read the other way: each row a variable, each column a person."""
    findings = []
    header = pd.Series([str(c) for c in frame.columns[1:]], dtype="string")
    if len(header) >= 5 and header.str.match(_ID_VALUE).mean() > 0.9 and header.is_unique:
        findings.append(
            Finding("microdata", "fail", "the column headers are identifiers: one column per person")
        )
    rows = frame.iloc[:200].astype("string")
    rows.index = [str(v) for v in frame.iloc[:200, 0]]
    turned = rows.iloc[:, 1:].T.reset_index(drop=True)
    turned.columns = [f"row {label}" for label in rows.index]
    for f in _column_findings(turned, set(), False, config):
        findings.append(
            Finding(
                f.rule, f.verdict, f.message.replace("column ", "row ", 1).replace("per row", "per column")
            )
        )
    if frame.shape[1] > config.max_aggregate_rows:
        findings.append(
            Finding(
                "microdata",
                "fail",
                f"{frame.shape[1]} columns: more than a table of aggregates plausibly has "
                f"(limit {config.max_aggregate_rows}); this looks like row-level data turned on its side",
            )
        )
    return findings


_NHS_WEIGHTS = np.arange(10, 1, -1)


def _nhs_numbers(column: pd.Series) -> bool:
    """Whole numbers of ten digits whose check digit is right: NHS numbers stored as numbers."""
    if not pd.api.types.is_integer_dtype(column) and not pd.api.types.is_float_dtype(column):
        return False
    values = _sample(column).dropna().to_numpy(dtype=float)
    if values.size < 5 or not np.all((values >= 1e9) & (values < 1e10) & (values == np.round(values))):
        return False
    digits = (values.astype(np.int64)[:, None] // 10 ** np.arange(9, -1, -1)) % 10
    check = (11 - (digits[:, :9] * _NHS_WEIGHTS).sum(axis=1) % 11) % 11
    return bool(np.mean(check == digits[:, 9]) > 0.9)


def _known_identifiers(table: Table, context: CheckContext) -> list[Finding]:
    if context.identifiers is None:
        return []
    frame = table.frame
    hits: dict[str, set[str]] = {}
    names_hit = context.matching_identifiers({str(c) for c in frame.columns})
    if names_hit:
        hits["header"] = names_hit
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_float_dtype(column):
            continue
        distinct = set(column.dropna().astype("string").unique().tolist())
        found = context.matching_identifiers(distinct)
        if found:
            hits[str(name)] = found
    if not hits:
        return []
    where = "; ".join(f"{k}: {len(v)} value(s)" for k, v in hits.items())
    return [Finding("microdata", "fail", f"contains the project's pseudonyms or raw identifiers ({where})")]


def text_findings(item: Text, context: CheckContext) -> list[Finding]:
    tokens = set(re.findall(r"[A-Za-z0-9_-]{6,}", item.text))
    if context.matching_identifiers(tokens):
        return [Finding("microdata", "fail", "text contains the project's pseudonyms or identifiers")]
    id_like = sum(1 for token in re.findall(r"[0-9A-Fa-f-]{10,}", item.text) if _ID_VALUE.match(token))
    if id_like >= 5:
        return [Finding("microdata", "fail", f"text holds {id_like} identifier-like values (row-level data)")]
    if item.kind == "prose" and re.search(r"\d", item.text):
        return [
            Finding(
                "text",
                "review",
                "free-form text with numbers cannot be checked automatically; a checker must read it",
            )
        ]
    return []


def regression(item: Regression, config: RuleConfig) -> list[Finding]:
    if item.df_resid is None:
        return [
            Finding(
                "regression",
                "review",
                f"{item.model} output without residual degrees of freedom; show them (Df Residuals)",
            )
        ]
    if item.df_resid < config.min_df_resid:
        return [
            Finding(
                "regression",
                "fail",
                f"{item.model} has {item.df_resid:g} residual degrees of freedom "
                f"(minimum {config.min_df_resid})",
            )
        ]
    return [Finding("regression", "pass", f"{item.model} with {item.df_resid:g} residual degrees of freedom")]


_COEF = re.compile(r"^(coef|coefficient|coefficients|estimate|beta|b|odds ratio|or|params)$", re.I)
_SE = re.compile(r"^(std err|std\.? error|se|bse|p>\|[tz]\||p-?value|pvalue|p|t|z|\[0\.025|0\.975\])$", re.I)
_DF = re.compile(r"^(df_resid|df resid|df residuals|residual df|dof|df)$", re.I)


def as_regression(table: Table) -> Regression | None:
    """A coefficient table (coef + std err/p columns) is a regression output, not a frequency table."""
    names = [c.strip() for c in table.frame.columns]
    if not (any(_COEF.match(c) for c in names) and any(_SE.match(c) for c in names)):
        return None
    df_col = next((c for c in table.frame.columns if _DF.match(c.strip())), None)
    df_values = (
        pd.to_numeric(table.frame[df_col], errors="coerce").dropna() if df_col else pd.Series(dtype=float)
    )
    if df_values.empty:
        labels = [label.lower() for label in table.row_labels]
        row = next((i for i, label in enumerate(labels) if _DF.match(label)), None)
        if row is not None:
            df_values = pd.Series(table.values[row]).dropna()
    return Regression(
        table.name, float(df_values.min()) if not df_values.empty else None, "coefficient table"
    )


def table_findings(table: Table, config: RuleConfig, context: CheckContext) -> list[Finding]:
    findings = microdata(table, config, context)
    findings += threshold(table, config)
    findings += zeros(table, config)
    findings += dominance(table, config, context)
    findings += extremes(table, config)
    findings += secondary_suppression(table, config)
    findings += rounding(table, config)
    return findings

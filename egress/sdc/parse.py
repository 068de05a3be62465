"""Read output files into tables, regression summaries, text and things that cannot be checked.

Parsers only read; they make no disclosure decisions. Large CSV/TSV and Parquet files are read by
Arrow (multi-threaded, columnar), never row by row in Python.
"""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd

from egress.sdc.model import Opaque, Parsed, Regression, RuleConfig, Table, Text
from egress.sdc.structure import interpret

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".bmp", ".tif", ".tiff", ".webp", ".eps"}
_DF_RESID = re.compile(r"Df Residuals:?\s*(?:</th>\s*<td>)?\s*(-?\d+(?:\.\d+)?)", re.I)
_MODEL = re.compile(r"([A-Za-z.]+(?: [A-Za-z.]+)?) Regression Results")
_REGRESSION_HINT = re.compile(r"Regression Results|Df Residuals|Dep\. Variable", re.I)


def read_path(path: Path, config: RuleConfig) -> Parsed:
    suffix = path.suffix.lower()
    name = str(path)
    if suffix in IMAGE_SUFFIXES:
        return Parsed([Opaque(name, "an image cannot be checked automatically; a checker must look at it")])
    if suffix == ".pdf":
        return Parsed([Opaque(name, "a PDF cannot be checked automatically; a checker must read it")])
    if suffix in (".csv", ".tsv", ".tab"):
        return Parsed([interpret(read_delimited(path, "\t" if suffix != ".csv" else ","), name, config)])
    if suffix in (".parquet", ".pq"):
        return Parsed([interpret(read_parquet(path), name, config)])
    if suffix == ".json":
        return parse_json(json.loads(path.read_text(encoding="utf-8")), name, config)
    if suffix == ".ipynb":
        return parse_notebook(json.loads(path.read_text(encoding="utf-8")), name, config)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return Parsed(
            [Opaque(name, f"unknown binary format {suffix or '(no extension)'}: cannot be checked")]
        )
    if suffix in (".html", ".htm"):
        return parse_html(text, name, config)
    if suffix in (".md", ".markdown"):
        return parse_markdown(text, name, config)
    if suffix in (".txt", ".log", ".out", ".text", ""):
        return parse_text(text, name)
    return Parsed([Opaque(name, f"unknown format {suffix}: cannot be checked automatically")])


def read_delimited(path: Path, sep: str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, sep=sep, engine="pyarrow")
    except Exception:  # pyarrow is strict about ragged rows; the C parser is more forgiving
        frame = pd.read_csv(path, sep=sep, low_memory=False)
    return _merge_multiheader(frame)


def _merge_multiheader(frame: pd.DataFrame) -> pd.DataFrame:
    """Pandas writes two-level columns as two header rows, then a row holding the index names."""
    if len(frame) < 2 or frame.shape[1] < 2:
        return frame
    first, second = frame.iloc[0], frame.iloc[1]
    sub_labels = first.iloc[1:].notna().all() and pd.to_numeric(first.iloc[1:], errors="coerce").isna().all()
    names_row = pd.notna(second.iloc[0]) and second.iloc[1:].isna().all()
    if not sub_labels or not (names_row or pd.isna(first.iloc[0]) or str(first.iloc[0]).strip() == ""):
        return frame
    tops = [re.sub(r"\.\d+$", "", str(c)) if not str(c).startswith("Unnamed") else "" for c in frame.columns]
    columns = [
        f"{top} / {sub}" if top else str(sub) for top, sub in zip(tops, first.astype(str), strict=True)
    ]
    drop = 2 if names_row else 1
    if names_row:
        columns[0] = str(second.iloc[0])
    frame = frame.iloc[drop:].reset_index(drop=True)
    frame.columns = columns
    frame = frame.infer_objects()
    frame.attrs["row_offset"] = drop  # findings name cells by their row in the file
    return frame


def read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    frame = pq.read_table(path).to_pandas()
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index()
    return frame


def regression_from_text(text: str, name: str) -> Regression | None:
    if not _REGRESSION_HINT.search(text):
        return None
    plain = html.unescape(re.sub(r"<[^>]+>", " ", text)) if "<" in text else text
    found = _DF_RESID.search(plain)
    model = _MODEL.search(plain)
    label = f"{model.group(1)} regression" if model else "regression"
    return Regression(name, float(found.group(1)) if found else None, label)


def parse_text(text: str, name: str) -> Parsed:
    found = regression_from_text(text, name)
    return Parsed([found if found else Text(name, text)])


class _Tables(HTMLParser):
    """Collect every <table> as rows of (text, is_header_cell)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[tuple[str, bool]]]] = []
        self._depth = 0
        self._cell: list[str] | None = None
        self._is_th = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._depth += 1
            if self._depth == 1:
                self.tables.append([])
        elif self._depth == 1 and tag == "tr":
            self.tables[-1].append([])
        elif self._depth == 1 and tag in ("td", "th"):
            self._cell, self._is_th = [], tag == "th"

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._depth -= 1
        elif self._depth == 1 and tag in ("td", "th") and self._cell is not None and self.tables[-1]:
            self.tables[-1][-1].append((" ".join("".join(self._cell).split()), self._is_th))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _frame_from_rows(rows: list[list[tuple[str, bool]]]) -> tuple[pd.DataFrame, int] | None:
    """Header rows are all-<th>; body rows start with <th> index cells (pandas' to_html)."""
    rows = [r for r in rows if r]
    header = [r for r in rows if all(th for _, th in r)]
    body = [r for r in rows if not all(th for _, th in r)]
    if not body:
        return None
    width = max(len(r) for r in body)
    n_labels = next((i for i, (_, th) in enumerate(body[0]) if not th), 0)
    names = [f"col{i}" for i in range(width)]
    for row in header:
        cells = [text for text, _ in row]
        if len(cells) == width:
            names = [
                f"{old} {new}".strip() if not old.startswith("col") else new
                for old, new in zip(names, cells, strict=True)
            ]
        elif cells and len(cells) <= n_labels:  # the index-name row of to_html
            names[: len(cells)] = cells
    names = [n if n else f"col{i}" for i, n in enumerate(names)]
    data = [[text for text, _ in r] + [""] * (width - len(r)) for r in body]
    return pd.DataFrame(data, columns=names), max(n_labels, 0)


def parse_html(text: str, name: str, config: RuleConfig) -> Parsed:
    found = regression_from_text(text, name)
    if found:
        return Parsed([found])
    collector = _Tables()
    collector.feed(text)
    parsed = Parsed()
    for i, rows in enumerate(collector.tables):
        built = _frame_from_rows(rows)
        if built:
            frame, n_labels = built
            label = name if len(collector.tables) == 1 else f"{name} [table {i + 1}]"
            parsed.items.append(interpret(frame, label, config, label_count=n_labels or None))
    outside = re.sub(r"<table.*?</table>", " ", text, flags=re.S | re.I)
    prose = html.unescape(re.sub(r"<[^>]+>", " ", outside)).strip()
    if prose or not parsed.items:
        parsed.items.append(Text(name, prose))
    return parsed


def parse_markdown(text: str, name: str, config: RuleConfig) -> Parsed:
    parsed, prose, block = Parsed(), [], []
    for line in [*text.splitlines(), ""]:
        if line.strip().startswith("|") or (block and "|" in line):
            block.append(line)
            continue
        if block:
            _markdown_table(block, f"{name} [table {len(parsed.items) + 1}]", config, parsed, prose)
            block = []
        prose.append(line)
    tables = [i for i in parsed.items if isinstance(i, Table)]
    if len(tables) == 1:
        tables[0].name = name
    rest = "\n".join(prose).strip()
    if rest or not parsed.items:
        parsed.items.append(Text(name, rest))
    return parsed


def _markdown_table(
    block: list[str], name: str, config: RuleConfig, parsed: Parsed, prose: list[str]
) -> None:
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in block]
    rows = [r for r in rows if not all(re.fullmatch(r":?-{2,}:?", c) for c in r if c)]
    if len(rows) < 2:
        prose.extend(block)
        return
    width = len(rows[0])
    body = [(r + [""] * width)[:width] for r in rows[1:]]
    names = [c or f"col{i}" for i, c in enumerate(rows[0])]
    parsed.items.append(interpret(pd.DataFrame(body, columns=names), name, config))


def parse_json(data: Any, name: str, config: RuleConfig) -> Parsed:
    if isinstance(data, dict) and any(
        k in data for k in ("df_resid", "df_residuals", "params", "coefficients")
    ):
        df = data.get("df_resid", data.get("df_residuals"))
        return Parsed([Regression(name, float(df) if df is not None else None, "regression (JSON)")])
    frame = json_frame(data)
    if frame is None:
        return Parsed([Text(name, json.dumps(data))])
    return Parsed([interpret(frame, name, config)])


def json_frame(data: Any) -> pd.DataFrame | None:
    """A table from pandas' JSON orients: records, split, table, columns, index, values."""
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        return pd.DataFrame.from_records(data)
    if isinstance(data, list) and data and all(isinstance(r, list) for r in data):
        return pd.DataFrame(data)
    if not isinstance(data, dict) or not data:
        return None
    if {"columns", "data"} <= set(data):  # split
        frame = pd.DataFrame(data["data"], columns=data["columns"])
        if "index" in data:
            frame.insert(0, "index", data["index"])
        return frame
    if {"schema", "data"} <= set(data):  # table
        return pd.DataFrame.from_records(data["data"])
    if all(isinstance(v, dict) for v in data.values()):  # columns orient: {column: {row: value}}
        return pd.DataFrame(data).reset_index(names="index")
    if all(isinstance(v, list) for v in data.values()):  # {column: [values]}
        return pd.DataFrame(data)
    return None


def parse_notebook(nb: dict[str, Any], name: str, config: RuleConfig) -> Parsed:
    """Each output of each code cell is checked on its own; images go to a person."""
    parsed = Parsed()
    for ci, cell in enumerate(nb.get("cells", [])):
        for oi, output in enumerate(cell.get("outputs", []) or []):
            where = f"{name} [cell {ci + 1} output {oi + 1}]"
            kind = output.get("output_type")
            if kind == "stream":
                parsed.items.append(Text(where, _joined(output.get("text", ""))))
            elif kind == "error":
                parsed.items.append(Text(where, "\n".join(output.get("traceback", []))))
            elif kind in ("execute_result", "display_data"):
                parsed.items.extend(_rich_output(output.get("data", {}), where, config))
    return parsed


def _joined(value: str | list[str]) -> str:
    return "".join(value) if isinstance(value, list) else value


def _rich_output(
    data: dict[str, Any], where: str, config: RuleConfig
) -> list[Table | Regression | Opaque | Text]:
    images = [k for k in data if k.startswith("image/") or k == "application/pdf"]
    if images:
        return [
            Opaque(where, f"{images[0]} output cannot be checked automatically; a checker must look at it")
        ]
    if "text/html" in data:
        return parse_html(_joined(data["text/html"]), where, config).items
    if "text/markdown" in data:
        return parse_markdown(_joined(data["text/markdown"]), where, config).items
    if "text/plain" in data:
        return parse_text(_joined(data["text/plain"]), where).items
    return [Opaque(where, f"output of type {', '.join(data) or 'none'} cannot be checked")]

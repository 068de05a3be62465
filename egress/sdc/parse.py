"""Read output files into tables, regression summaries, text and things that cannot be checked.

Parsers only read; they make no disclosure decisions. Large CSV/TSV and Parquet files are read by
Arrow (multi-threaded, columnar), never row by row in Python.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd

from egress.sdc import media
from egress.sdc.embedded import hidden_part, json_items
from egress.sdc.model import Finding, Opaque, Parsed, Regression, RuleConfig, Table, Text
from egress.sdc.structure import interpret

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".bmp", ".tif", ".tiff", ".webp", ".eps"}
_DF_RESID = re.compile(r"Df Residuals:?\s*(?:</th>\s*<td>)?\s*(-?\d+(?:\.\d+)?)", re.I)
_MODEL = re.compile(r"([A-Za-z.]+(?: [A-Za-z.]+)?) Regression Results")
_REGRESSION_HINT = re.compile(r"Regression Results|Df Residuals|Dep\. Variable", re.I)


def read_path(path: Path, config: RuleConfig) -> Parsed:
    suffix = path.suffix.lower()
    name = str(path)
    size = path.stat().st_size
    if suffix in IMAGE_SUFFIXES or suffix == ".pdf":
        return _picture(path.read_bytes(), suffix, name)
    if suffix in (".csv", ".tsv", ".tab"):
        return Parsed([interpret(read_delimited(path, "\t" if suffix != ".csv" else ","), name, config)])
    if suffix in (".parquet", ".pq"):
        return read_parquet(path, name, config)
    if size > config.max_document_bytes:
        return Parsed(
            findings=[
                Finding(
                    "format",
                    "fail",
                    f"{size / 2**20:,.0f} MiB is more than the {config.max_document_bytes / 2**20:,.0f} MiB "
                    f"a {suffix or 'text'} file is read whole for checking; clear large outputs or split it",
                )
            ]
        )
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


def _picture(data: bytes, suffix: str, name: str) -> Parsed:
    """A picture goes to a person; what it carries besides the picture is found here."""
    what = "a PDF" if suffix == ".pdf" else "an image"
    findings, texts = media.inspect(data, suffix, name)
    items: list[Table | Regression | Opaque | Text] = [
        Opaque(name, f"{what} cannot be checked automatically; a checker must look at it")
    ]
    if suffix == ".svg":
        texts.append(
            Text(f"{name} [text]", html.unescape(re.sub(r"<[^>]+>", " ", data.decode("utf-8", "replace"))))
        )
    return Parsed(items + texts, findings)


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


_PARQUET_KNOWN_KEYS = {b"pandas", b"ARROW:schema"}
_PANDAS_KEYS = {"index_columns", "column_indexes", "columns", "creator", "pandas_version", "attributes"}
_PANDAS_COLUMN_META = {None, "timezone", "num_categories", "ordered", "precision", "scale", "unit"}


def read_parquet(path: Path, name: str, config: RuleConfig) -> Parsed:
    """The table, capped in decoded size (a small compressed file can expand to gigabytes), and every
    key-value metadata entry beside it checked as data."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    meta = pf.metadata
    claimed = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    cap = config.max_decoded_bytes
    too_big = Finding(
        "format",
        "fail",
        f"decodes to more than {cap / 2**20:,.0f} MiB, the most a Parquet file is expanded to for checking; "
        "submit an aggregate table, not a dataset",
    )
    # Fixed-width columns decode to at least rows x width bytes: a bomb of zeros is refused from the
    # footer alone, before any page is decompressed.
    width = 0
    for field in pf.schema_arrow:
        try:
            width += field.type.bit_width // 8
        except ValueError:  # variable width (strings, lists): counted while decoding below
            continue
    if claimed > cap or meta.num_rows * width > cap:
        return Parsed(findings=[too_big])
    batches, decoded = [], 0
    for batch in pf.iter_batches(batch_size=65_536):  # the file's own size claims are not trusted
        decoded += batch.nbytes
        if decoded > cap:
            return Parsed(findings=[too_big])
        batches.append(batch)
    frame = pa.Table.from_batches(batches, schema=pf.schema_arrow).to_pandas()
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index()
    parsed = Parsed([interpret(frame, name, config)])
    for key, value in (pf.schema_arrow.metadata or {}).items():
        label = key.decode("utf-8", "replace")
        if key not in _PARQUET_KNOWN_KEYS:
            _hidden(parsed, value.decode("utf-8", "replace"), f"Parquet metadata {label!r}", config)
        elif key == b"pandas":
            _pandas_metadata(parsed, value, config)
    for field in pf.schema_arrow:
        if field.metadata:
            extra = {
                k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in field.metadata.items()
            }
            _hidden(parsed, extra, f"Parquet metadata of column {field.name!r}", config)
    return parsed


def _pandas_metadata(parsed: Parsed, raw: bytes, config: RuleConfig) -> None:
    """pandas' own entry is expected, but only its known parts: ``df.attrs`` and column extras are data."""
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        _hidden(parsed, raw.decode("utf-8", "replace"), "Parquet metadata 'pandas' (not JSON)", config)
        return
    extra = {k: v for k, v in meta.items() if k not in _PANDAS_KEYS or (k == "attributes" and v)}
    for column in meta.get("columns") or []:
        odd = set(column.get("metadata") or {}) - _PANDAS_COLUMN_META
        if odd:
            extra[f"columns.{column.get('name')}"] = column["metadata"]
    if extra:
        _hidden(parsed, extra, "Parquet metadata 'pandas'", config)


def _hidden(parsed: Parsed, value: Any, where: str, config: RuleConfig) -> None:
    finding, items = hidden_part(value, where, config)
    parsed.findings.append(finding)
    parsed.items.extend(items)


def regression_from_text(text: str, name: str) -> Regression | None:
    if not _REGRESSION_HINT.search(text):
        return None
    plain = html.unescape(re.sub(r"<[^>]+>", " ", text)) if "<" in text else text
    found = _DF_RESID.search(plain)
    model = _MODEL.search(plain)
    label = f"{model.group(1)} regression" if model else "regression"
    return Regression(name, float(found.group(1)) if found else None, label)


_RULE_LINE = re.compile(r"^={20,}\s*$", re.M)
_NOTE_LINE = re.compile(r"^\s*(Notes?:|\[\d+\]|\S.*\b(specified|correctly|multicollinearity|problems)\b)")
MAX_COEFFICIENTS = 500


def split_summary(text: str) -> tuple[str, str, str] | None:
    """(before, summary, after) for a statsmodels text summary: its title, ``====`` rules and notes.

    What stands before its title or after its last rule and notes is not part of it and is checked
    on its own, so a model summary cannot carry rows past the checks.
    """
    title = _MODEL.search(text)
    rules = list(_RULE_LINE.finditer(text))
    if title is None or len(rules) < 2:
        return None
    start = text.rfind("\n", 0, title.start()) + 1
    end = rules[-1].end()
    lines = text[end:].splitlines(keepends=True)
    while lines and (not lines[0].strip() or _NOTE_LINE.match(lines[0])):
        end += len(lines.pop(0))
    return text[:start], text[start:end], text[end:]


def parse_text(text: str, name: str) -> Parsed:
    parts = split_summary(text)
    if parts is None:  # regression words without a summary's structure are text a person reads
        return Parsed([Text(name, text)])
    before, summary, after = parts
    found = regression_from_text(summary, name)
    assert found is not None
    rows = sum(1 for line in summary.splitlines() if re.match(r"^\S.*\s-?\d+\.\d+\s+-?\d+\.\d+", line))
    parsed = Parsed([found])
    if rows > MAX_COEFFICIENTS:
        parsed.findings.append(
            Finding(
                "regression", "review", f"{rows} coefficient rows: more than a model summary plausibly has"
            )
        )
    for label, rest in (("before the summary", before), ("after the summary", after)):
        if rest.strip():
            parsed.items.append(Text(f"{name} [text {label}]", rest))
    return parsed


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


_SIMPLETABLE = re.compile(r"<table[^>]*class=[\"']?simpletable[\"']?.*?</table>", re.S | re.I)
_HTML_NOTES = re.compile(r"Notes?:|\[\d+\][^\[]*?(?:specified|problems)\.", re.S)


def parse_html(text: str, name: str, config: RuleConfig) -> Parsed:
    parsed = Parsed()
    summary = "".join(_SIMPLETABLE.findall(text))
    found = regression_from_text(summary, name) if summary else None
    if found:  # a statsmodels summary: its own tables are the model; anything else is checked as usual
        parsed.items.append(found)
        text = _SIMPLETABLE.sub(" ", text)
    collector = _Tables()
    collector.feed(text)
    for i, rows in enumerate(collector.tables):
        built = _frame_from_rows(rows)
        if built:
            frame, n_labels = built
            label = name if len(collector.tables) == 1 and not found else f"{name} [table {i + 1}]"
            parsed.items.append(interpret(frame, label, config, label_count=n_labels or None))
    outside = re.sub(r"<table.*?</table>", " ", text, flags=re.S | re.I)
    prose = html.unescape(re.sub(r"<[^>]+>", " ", outside))
    if found:
        prose = _HTML_NOTES.sub(" ", prose)
    prose = prose.strip()
    if prose or not parsed.items:
        parsed.items.append(Text(name if not found else f"{name} [text]", prose))
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


_REGRESSION_JSON = {"params", "coefficients"}
_REGRESSION_JSON_KEYS = {
    "params", "coefficients", "bse", "std_err", "se", "pvalues", "tvalues", "conf_int", "df_resid",
    "df_residuals", "df_model", "nobs", "rsquared", "rsquared_adj", "aic", "bic", "llf", "model", "formula",
}  # fmt: skip


def parse_json(data: Any, name: str, config: RuleConfig) -> Parsed:
    if isinstance(data, dict) and _REGRESSION_JSON & set(data):
        return _regression_json(data, name, config)
    frame = json_frame(data)
    if frame is None:
        items = json_items(data, name, config)
        return Parsed(items or [Text(name, json.dumps(data))])
    return Parsed([interpret(frame, name, config)])


def _regression_json(data: dict[str, Any], name: str, config: RuleConfig) -> Parsed:
    """A model's JSON: coefficients with standard errors and a residual df; anything else is data."""
    df = data.get("df_resid", data.get("df_residuals"))
    params = data.get("params", data.get("coefficients"))
    errors = next((data[k] for k in ("bse", "std_err", "se") if k in data), None)
    parsed = Parsed()
    size = len(params) if isinstance(params, dict | list) else 0
    if errors is None or not size or size > MAX_COEFFICIENTS:
        parsed.items.append(Text(name, json.dumps(data)))
        parsed.findings.append(
            Finding(
                "regression",
                "review",
                "coefficients without standard errors, or more of them than a model has: not read as a "
                "regression; a checker must read it",
            )
        )
    else:
        parsed.items.append(Regression(name, float(df) if df is not None else None, "regression (JSON)"))
        coefficients = params if isinstance(params, dict) else {str(i): v for i, v in enumerate(params)}
        parsed.items.append(
            Text(f"{name} [coefficient names]", " ".join(map(str, coefficients)), kind="names")
        )
    for key in sorted(set(data) - _REGRESSION_JSON_KEYS):
        finding, items = hidden_part(data[key], f"key {key!r} beside the model", config)
        parsed.findings.append(finding)
        parsed.items.extend(items)
    return parsed


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


_NB_KNOWN = {
    "kernelspec": {"name", "display_name", "language", "env", "argv"},
    "language_info": {
        "name", "version", "mimetype", "file_extension", "pygments_lexer", "codemirror_mode",
        "nbconvert_exporter",
    },
}  # fmt: skip
_CELL_KNOWN = {
    "collapsed", "scrolled", "editable", "deletable", "trusted", "jupyter", "execution", "slideshow", "tags",
}  # fmt: skip
_OUTPUT_META_KNOWN = {"width", "height", "needs_background", "unconfined", "isolated"}
_PICTURE_MIME = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "application/pdf": ".pdf"}


def parse_notebook(nb: dict[str, Any], name: str, config: RuleConfig) -> Parsed:
    """Every part of a notebook that can leave with it: each cell's source, each representation of each
    output, attachments and metadata. Jupyter shows one representation of an output and no metadata,
    so anything beyond the usual is a finding, and all of it is checked."""
    parsed = Parsed()
    for key, value in nb.items():
        if key not in ("cells", "nbformat", "nbformat_minor", "metadata"):
            _hidden(parsed, value, f"notebook key {key!r}", config)
    for key, value in (nb.get("metadata") or {}).items():
        known = _NB_KNOWN.get(key)
        extra = (
            value
            if known is None or not isinstance(value, dict)
            else {k: v for k, v in value.items() if k not in known}
        )
        if extra:
            _hidden(parsed, extra, f"notebook metadata {key!r}", config)
    for ci, cell in enumerate(nb.get("cells", [])):
        _notebook_cell(parsed, cell, name, f"cell {ci + 1}", config)
    return parsed


def _notebook_cell(parsed: Parsed, cell: dict[str, Any], name: str, label: str, config: RuleConfig) -> None:
    kind = cell.get("cell_type")
    source = _joined(cell.get("source", ""))
    if kind == "markdown":
        parsed.items.extend(parse_markdown(source, f"{name} [{label} markdown]", config).items)
    elif kind == "code":  # code is shown to the checker as it is; only identifiers in it are checked
        parsed.items.append(Text(f"{name} [{label} code]", source, kind="names"))
    elif source.strip():
        parsed.items.append(Text(f"{name} [{label} {kind or 'raw'}]", source))
    meta = cell.get("metadata") or {}
    extra = {k: v for k, v in meta.items() if k not in _CELL_KNOWN}
    if extra:
        _hidden(parsed, extra, f"{label} metadata", config)
    if meta.get("tags"):
        parsed.items.append(Text(f"{name} [{label} tags]", " ".join(map(str, meta["tags"]))))
    for attachment, bundle in (cell.get("attachments") or {}).items():
        part = f"{label} attachment {attachment!r}"
        parsed.findings.append(
            Finding("hidden", "review", f"{part}: shown only where the markdown links it; checked on its own")
        )
        _representations(parsed, bundle if isinstance(bundle, dict) else {}, name, part, config)
    for oi, output in enumerate(cell.get("outputs", []) or []):
        _notebook_output(parsed, output, name, f"{label} output {oi + 1}", config)


def _notebook_output(
    parsed: Parsed, output: dict[str, Any], name: str, label: str, config: RuleConfig
) -> None:
    kind = output.get("output_type")
    where = f"{name} [{label}]"
    if kind == "stream":
        parsed.items.append(Text(where, _joined(output.get("text", ""))))
    elif kind == "error":
        parsed.items.append(Text(where, "\n".join(map(str, output.get("traceback", [])))))
        parsed.items.append(
            Text(f"{name} [{label} error]", f"{output.get('ename', '')}: {output.get('evalue', '')}")
        )
    elif kind in ("execute_result", "display_data", "update_display_data"):
        _representations(parsed, output.get("data") or {}, name, label, config)
        for mime, meta in (output.get("metadata") or {}).items():
            if isinstance(meta, dict):
                extra = {k: v for k, v in meta.items() if k not in _OUTPUT_META_KNOWN}
            else:
                extra = {} if mime in _OUTPUT_META_KNOWN else {mime: meta}
            if extra:
                _hidden(parsed, extra, f"{label} metadata", config)
    else:
        _hidden(parsed, output, f"{label} of unknown type {kind!r}", config)


def _representations(parsed: Parsed, data: dict[str, Any], name: str, label: str, config: RuleConfig) -> None:
    """Each MIME representation is checked: a viewer shows one, the file carries them all."""
    where = f"{name} [{label}]"
    html_text = _joined(data["text/html"]) if "text/html" in data else None
    for mime, value in data.items():
        part = where if mime in ("text/html", "text/plain") else f"{name} [{label} {mime}]"
        if mime in _PICTURE_MIME:
            try:
                raw = base64.b64decode(_joined(value), validate=False)
            except (ValueError, TypeError):
                parsed.findings.append(Finding("hidden", "fail", f"{label} {mime}: not valid base64"))
                continue
            found = _picture(raw, _PICTURE_MIME[mime], part)
            parsed.items.extend(found.items)
            for f in found.findings:
                parsed.findings.append(Finding(f.rule, f.verdict, f"{label} {mime}: {f.message}"))
        elif mime == "image/svg+xml":
            parsed.items.extend(_picture(_joined(value).encode(), ".svg", part).items)
        elif mime == "text/html":
            parsed.items.extend(parse_html(html_text or "", part, config).items)
        elif mime == "text/plain":
            text = _joined(value)
            if html_text is not None and _adds_nothing(text, html_text):
                continue  # the HTML's own text, as Jupyter writes it beside every table
            parsed.items.append(Text(part if html_text is None else f"{name} [{label} text/plain]", text))
        elif mime == "text/markdown":
            parsed.items.extend(parse_markdown(_joined(value), part, config).items)
        elif mime in ("text/latex", "text/x-latex"):
            parsed.items.append(Text(part, _joined(value)))
        elif mime == "application/json" or mime.endswith("+json"):
            parsed.items.extend(json_items(value, part, config) or [Text(part, json.dumps(value))])
        else:
            parsed.items.append(
                Opaque(part, f"output of type {mime} cannot be checked; a checker must look at it")
            )
    if not data:
        parsed.items.append(Opaque(where, "an output without content cannot be checked"))


_TOKEN = re.compile(r"[A-Za-z0-9_.%+-]{2,}|\d")


def _adds_nothing(plain: str, html_text: str) -> bool:
    """True when every word and number of the plain text also appears in the HTML's text."""
    shown = Counter(_TOKEN.findall(html.unescape(re.sub(r"<[^>]+>", " ", html_text))))
    return not (Counter(_TOKEN.findall(plain)) - shown)


def _joined(value: Any) -> str:
    if isinstance(value, list):
        return "".join(map(str, value))
    return value if isinstance(value, str) else json.dumps(value)

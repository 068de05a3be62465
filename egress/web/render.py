"""Showing researcher files to checkers: tables with their flagged cells, notebooks, Markdown.

Researchers' HTML and SVG are never rendered here: they are shown as text or inside a sandboxed
frame (SANDBOX_CSP below), so they never run in this origin.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import nh3
import pyarrow.parquet as pq
from markdown_it import MarkdownIt

from egress.review.storage import BlobStore, suffix_of

TEXT_TYPES = {"txt", "log", "py", "r", "sql", "json", "csv", "tsv", "md", "html", "svg", "ipynb"}
INLINE_IMAGES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg"}
SANDBOXED = {"html": "text/html", "svg": "image/svg+xml"}
# For researcher-made HTML/SVG: an opaque origin, no scripts, nothing fetched, framed only by us.
SANDBOX_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"
MAX_RENDER = 2 * 1024 * 1024
MAX_ROWS, MAX_COLS = 500, 60

_md = MarkdownIt("commonmark", {"html": False}).enable("table")


def markdown_html(text: str) -> str:
    return nh3.clean(_md.render(text))


def flagged_cells(checks: dict[str, Any] | None) -> dict[tuple[int, int], list[str]]:
    """{(row, col): [messages]} from the findings' `cells`, which the SDC engine gives in file
    coordinates (row 0 = the first line after the header, columns as in the file)."""
    out: dict[tuple[int, int], list[str]] = {}
    for finding in (checks or {}).get("findings", []):
        for cell in finding.get("cells") or []:
            if isinstance(cell, list | tuple) and len(cell) == 2:
                out.setdefault((int(cell[0]), int(cell[1])), []).append(finding.get("message", ""))
    return out


def _cut(shown: int, total: int, what: str) -> str | None:
    return f"{shown:,} of {total:,} {what} shown" if total > shown else None


def render_table(
    data: bytes, delimiter: str, checks: dict[str, Any] | None, size: int | None = None
) -> dict[str, Any]:
    size = len(data) if size is None else size
    text = data[:MAX_RENDER].decode("utf-8", "replace")
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    flags = flagged_cells(checks)
    width = max((len(r) for r in rows), default=0)
    header = rows[0][:MAX_COLS] if rows else []
    body = []
    for r, row in enumerate(rows[1 : MAX_ROWS + 1]):
        body.append([(value, flags.get((r, c))) for c, value in enumerate(row[:MAX_COLS])])
    notes = [
        _cut(MAX_COLS, width, "columns"),
        _cut(MAX_ROWS, len(rows) - 1, "rows" + (" read so far" if size > MAX_RENDER else "")),
        _cut(MAX_RENDER, size, "bytes read for this view"),
    ]
    hidden_flags = sum(1 for r, c in flags if r >= MAX_ROWS or c >= MAX_COLS)
    if hidden_flags:
        notes.append(f"{hidden_flags} flagged cell(s) lie outside the part shown")
    return {
        "header": header,
        "rows": body,
        "truncated": any(notes),
        "flag_count": len(flags),
        "notes": [n for n in notes if n],
    }


MAX_CELLS = 300
_ROUTINE_CELL_META = {"collapsed", "scrolled", "editable", "deletable", "trusted", "jupyter", "execution"}


def _joined(value: Any) -> str:
    return (
        "".join(map(str, value))
        if isinstance(value, list)
        else value
        if isinstance(value, str)
        else json.dumps(value)
    )


def _representations(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """Every MIME representation of an output, labelled: Jupyter shows one, the file carries all."""
    shown = []
    for mime, value in bundle.items():
        if mime == "image/png" or mime == "image/jpeg":
            shown.append({"mime": mime, "image": f"data:{mime};base64," + _joined(value).replace("\n", "")})
        else:
            shown.append({"mime": mime, "text": _joined(value)[:MAX_RENDER]})
    return shown


def render_notebook(data: bytes, size: int | None = None) -> dict[str, Any]:
    """Cells with every part a checker must see: sources, all representations, attachments, metadata."""
    size = len(data) if size is None else size
    if size > MAX_RENDER * 4:
        raise ValueError(f"the notebook is {size:,} bytes, more than this viewer reads")
    nb = json.loads(data.decode("utf-8", "replace"))
    cells = []
    all_cells = nb.get("cells", [])
    for cell in all_cells[:MAX_CELLS]:
        source = _joined(cell.get("source", ""))
        meta = {k: v for k, v in (cell.get("metadata") or {}).items() if k not in _ROUTINE_CELL_META}
        extra: dict[str, Any] = {"meta": json.dumps(meta, indent=1)[:MAX_RENDER] if meta else ""}
        extra["attachments"] = [
            {"name": name, "parts": _representations(b if isinstance(b, dict) else {})}
            for name, b in (cell.get("attachments") or {}).items()
        ]
        if cell.get("cell_type") == "markdown":
            cells.append({"kind": "markdown", "html": markdown_html(source), **extra})
            continue
        outputs = []
        for out in cell.get("outputs", []) or []:
            if not isinstance(out, dict):
                continue
            if out.get("output_type") == "stream":
                outputs.append(
                    {"parts": [{"mime": out.get("name", "stream"), "text": _joined(out.get("text", ""))}]}
                )
            elif out.get("output_type") == "error":
                outputs.append(
                    {"parts": [{"mime": "error", "text": "\n".join(map(str, out.get("traceback", [])))}]}
                )
            else:
                parts = _representations(out.get("data") or {})
                if out.get("metadata"):
                    parts.append({"mime": "output metadata", "text": json.dumps(out["metadata"], indent=1)})
                outputs.append({"parts": parts, "several": len(parts) > 1})
        cells.append({"kind": "code", "source": source, "outputs": outputs, **extra})
    notebook_meta = nb.get("metadata") or {}
    unusual = {k: v for k, v in notebook_meta.items() if k not in ("kernelspec", "language_info")}
    notes = [n for n in [_cut(MAX_CELLS, len(all_cells), "cells")] if n]
    return {
        "cells": cells,
        "metadata": json.dumps(unusual, indent=1)[:MAX_RENDER] if unusual else "",
        "notes": notes,
    }


def render_parquet(path: Path) -> dict[str, Any]:
    pf = pq.ParquetFile(path)
    table = next(pf.iter_batches(batch_size=MAX_ROWS), None)
    names = list(pf.schema_arrow.names)
    header = names[:MAX_COLS]
    rows = (
        []
        if table is None
        else [
            [(str(v), None) for v in row[:MAX_COLS]] for row in zip(*table.to_pydict().values(), strict=True)
        ]
    )
    metadata = [
        {"key": k.decode("utf-8", "replace"), "value": v.decode("utf-8", "replace")[:MAX_RENDER]}
        for k, v in (pf.schema_arrow.metadata or {}).items()
        if k != b"ARROW:schema"
    ]
    notes = [
        n for n in (_cut(MAX_COLS, len(names), "columns"), _cut(MAX_ROWS, pf.metadata.num_rows, "rows")) if n
    ]
    return {
        "header": header,
        "rows": rows,
        "truncated": bool(notes),
        "flag_count": 0,
        "notes": notes,
        "metadata": metadata,
    }


def render_file(store: BlobStore, meta: dict[str, Any], data: bytes) -> dict[str, Any]:
    ext = suffix_of(meta["name"])
    view: dict[str, Any] = {"ext": ext}
    try:
        if ext in ("csv", "tsv"):
            view["table"] = render_table(
                data, "\t" if ext == "tsv" else ",", meta.get("checks"), meta["size"]
            )
        elif ext == "parquet":
            view["table"] = render_parquet(store.path(meta["sha256"]))
        elif ext in INLINE_IMAGES:
            view["image"] = True
        elif ext == "md":
            view["html"] = markdown_html(data[:MAX_RENDER].decode("utf-8", "replace"))
        elif ext == "ipynb":
            view["notebook"] = render_notebook(data, meta["size"])
        elif ext in SANDBOXED:
            view["sandboxed"] = True
        if ext in TEXT_TYPES and "table" not in view and "notebook" not in view:
            view["text"] = data[:MAX_RENDER].decode("utf-8", "replace")
            view["notes"] = [n for n in [_cut(MAX_RENDER, meta["size"], "bytes")] if n]
    except (ValueError, UnicodeDecodeError, OSError, csv.Error) as exc:
        view = {"ext": ext, "error": f"This file could not be displayed ({exc}); download it to inspect."}
    return view

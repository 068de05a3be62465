"""Showing researcher files to checkers: tables with their flagged cells, notebooks, Markdown.

Researchers' HTML and SVG are never rendered here: they are shown as text or inside a sandboxed
frame (egress.web.security.SANDBOX_CSP), so they never run in this origin.
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


def render_table(data: bytes, delimiter: str, checks: dict[str, Any] | None) -> dict[str, Any]:
    text = data[:MAX_RENDER].decode("utf-8", "replace")
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    flags = flagged_cells(checks)
    header = rows[0][:MAX_COLS] if rows else []
    body = []
    for r, row in enumerate(rows[1 : MAX_ROWS + 1]):
        body.append([(value, flags.get((r, c))) for c, value in enumerate(row[:MAX_COLS])])
    return {"header": header, "rows": body, "truncated": len(rows) - 1 > MAX_ROWS, "flag_count": len(flags)}


def render_notebook(data: bytes) -> list[dict[str, Any]]:
    nb = json.loads(data[: MAX_RENDER * 4].decode("utf-8", "replace"))
    cells = []
    for cell in nb.get("cells", [])[:300]:
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        if cell.get("cell_type") == "markdown":
            cells.append({"kind": "markdown", "html": markdown_html(source)})
            continue
        outputs = []
        for out in cell.get("outputs", []) or []:
            bundle = out.get("data", {}) if isinstance(out, dict) else {}
            if "image/png" in bundle:
                png = (
                    "".join(bundle["image/png"])
                    if isinstance(bundle["image/png"], list)
                    else bundle["image/png"]
                )
                outputs.append({"image": "data:image/png;base64," + png.replace("\n", "")})
            elif "text/plain" in bundle or "text" in out:
                value = bundle.get("text/plain", out.get("text", ""))
                outputs.append({"text": "".join(value) if isinstance(value, list) else str(value)})
        cells.append({"kind": "code", "source": source, "outputs": outputs})
    return cells


def render_parquet(path: Path) -> dict[str, Any]:
    pf = pq.ParquetFile(path)
    table = next(pf.iter_batches(batch_size=MAX_ROWS), None)
    header = list(pf.schema_arrow.names)[:MAX_COLS]
    rows = (
        []
        if table is None
        else [
            [(str(v), None) for v in row[:MAX_COLS]] for row in zip(*table.to_pydict().values(), strict=True)
        ]
    )
    return {"header": header, "rows": rows, "truncated": pf.metadata.num_rows > MAX_ROWS, "flag_count": 0}


def render_file(store: BlobStore, meta: dict[str, Any], data: bytes) -> dict[str, Any]:
    ext = suffix_of(meta["name"])
    view: dict[str, Any] = {"ext": ext}
    try:
        if ext in ("csv", "tsv"):
            view["table"] = render_table(data, "\t" if ext == "tsv" else ",", meta.get("checks"))
        elif ext == "parquet":
            view["table"] = render_parquet(store.path(meta["sha256"]))
        elif ext in INLINE_IMAGES:
            view["image"] = True
        elif ext == "md":
            view["html"] = markdown_html(data[:MAX_RENDER].decode("utf-8", "replace"))
        elif ext == "ipynb":
            view["notebook"] = render_notebook(data)
        elif ext in SANDBOXED:
            view["sandboxed"] = True
        if ext in TEXT_TYPES and "table" not in view and "notebook" not in view:
            view["text"] = data[:MAX_RENDER].decode("utf-8", "replace")
    except (ValueError, UnicodeDecodeError, OSError, csv.Error) as exc:
        view = {"ext": ext, "error": f"This file could not be displayed ({exc}); download it to inspect."}
    return view

"""Data in the parts of a file no viewer shows: metadata, attachments, keys beside a known structure.

Such a part is always a finding (a checker is told it exists and what it holds), and its content is
checked as data: records, rows and column lists become tables for the usual rules, the rest is text.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from egress.sdc.model import Finding, Opaque, Regression, RuleConfig, Table, Text, quoted
from egress.sdc.structure import interpret

Item = Table | Regression | Opaque | Text
_MAX_DEPTH = 12
_MAX_ITEMS = 50


def hidden_part(value: Any, where: str, config: RuleConfig) -> tuple[Finding, list[Item]]:
    """A review finding naming the part, and the part's content as checkable items."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    finding = Finding(
        "hidden",
        "review",
        f"{where}: {len(text):,} characters a viewer does not show, checked as data: {quoted(text)!r}",
    )
    return finding, json_items(value, where, config)


def json_items(value: Any, where: str, config: RuleConfig) -> list[Item]:
    items: list[Item] = []
    _walk(value, where, config, items, 0)
    return items


def _walk(value: Any, where: str, config: RuleConfig, out: list[Item], depth: int) -> None:
    if len(out) >= _MAX_ITEMS:
        return
    if depth > _MAX_DEPTH:
        out.append(Opaque(where, "nested too deeply to check automatically"))
        return
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in ("{", "[") and depth < _MAX_DEPTH:
            try:
                _walk(json.loads(stripped), where, config, out, depth + 1)
                return
            except json.JSONDecodeError:
                pass
        if stripped:
            out.append(Text(where, value))
        return
    frame = _frame(value)
    if frame is not None:
        out.append(interpret(frame, where, config))
        return
    if isinstance(value, dict):
        scalars = {k: v for k, v in value.items() if not isinstance(v, dict | list | str)}
        if scalars:
            out.append(Text(where, " ".join(f"{k}={v}" for k, v in scalars.items())))
        for key, inner in value.items():
            if isinstance(inner, dict | list | str):
                _walk(inner, f"{where}.{key}", config, out, depth + 1)
    elif isinstance(value, list):
        scalars = [v for v in value if not isinstance(v, dict | list)]
        if scalars:
            out.append(Text(where, " ".join(map(str, scalars))))
        for i, inner in enumerate(value):
            if isinstance(inner, dict | list):
                _walk(inner, f"{where}[{i}]", config, out, depth + 1)
    elif value is not None:
        out.append(Text(where, str(value)))


def _flat(value: Any) -> bool:
    return not isinstance(value, dict | list)


def _frame(value: Any) -> pd.DataFrame | None:
    """Rows however they are spelled: records, lists of rows, or equal-length column lists."""
    if isinstance(value, list) and len(value) >= 2:
        if all(isinstance(r, dict) and all(_flat(v) for v in r.values()) for r in value):
            return pd.DataFrame.from_records(value)
        if all(isinstance(r, list) and all(_flat(v) for v in r) for r in value):
            width = max(len(r) for r in value)
            return pd.DataFrame([r + [None] * (width - len(r)) for r in value])
    if isinstance(value, dict) and len(value) >= 2:
        columns = list(value.values())
        lists = all(isinstance(c, list) and all(_flat(v) for v in c) for c in columns)
        if lists and len({len(c) for c in columns}) == 1 and len(columns[0]) >= 2:
            return pd.DataFrame(value)
    return None

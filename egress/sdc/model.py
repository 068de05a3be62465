"""The engine's vocabulary: verdicts, findings, rule settings, check context and parsed outputs.

Rules work on a table's body (rows after the header, columns after the label columns); the cells a
finding reports are in file coordinates: ``[row, col]``, 0-based, the row counted from the first line
after the header line, the column as it stands in the file (label columns included), so a viewer
marks exactly the cell the rule meant.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

Verdict = Literal["pass", "review", "fail"]
_RANK = {"pass": 0, "review": 1, "fail": 2}


def worst(verdicts: Iterable[str], default: Verdict = "pass") -> Verdict:
    found = list(verdicts)
    return max(found, key=_RANK.__getitem__) if found else default  # type: ignore[return-value]


QUOTE = 300  # characters of researcher-made text a finding may quote


def quoted(value: object) -> str:
    """Text for a finding: whitespace collapsed, at most QUOTE characters, saying how much was left out."""
    text = " ".join(str(value).split())
    return text if len(text) <= QUOTE else f"{text[:QUOTE]} … ({len(text) - QUOTE:,} more characters)"


@dataclass
class Finding:
    rule: str
    verdict: Verdict
    message: str
    cells: list[tuple[int, int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "verdict": self.verdict,
            "message": self.message,
            "cells": [[int(r), int(c)] for r, c in self.cells],
        }


@dataclass(frozen=True)
class RuleConfig:
    """Rule settings; every default can be overridden per project with ``from_dict``."""

    threshold: int = 10
    zeros: bool = True  # flag zero cells of frequency tables for review
    dominance_n: int = 2
    dominance_k: float = 90.0  # percent
    p_percent: float = 10.0
    min_df_resid: int = 10
    max_aggregate_rows: int = 1000  # more rows than this, without counts, looks like row-level data
    rounding_bases: tuple[int, ...] = (10, 5)
    free_text_words: int = 6
    max_cells_listed: int = 200  # keep findings readable on huge tables
    max_document_bytes: int = 32 << 20  # JSON, notebooks, HTML and text are read whole: refuse more
    max_decoded_bytes: int = 1 << 30  # a compressed Parquet table is expanded at most this far

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RuleConfig:
        """Build from a project's settings; nested ``{"dominance": {"n": 2, "k": 90}}`` is accepted."""
        flat: dict[str, Any] = {}
        for key, value in data.items():
            if key == "dominance" and isinstance(value, dict):
                flat.update({f"dominance_{k}": v for k, v in value.items() if k in ("n", "k")})
                if "p" in value:
                    flat["p_percent"] = value["p"]
            else:
                flat[key] = value
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(flat) - set(names))
        if unknown:
            raise ValueError(f"unknown SDC setting(s): {', '.join(unknown)}; known: {', '.join(names)}")
        if "rounding_bases" in flat:
            flat["rounding_bases"] = tuple(sorted((int(b) for b in flat["rounding_bases"]), reverse=True))
        return cls(**flat)

    @classmethod
    def from_file(cls, path: Path) -> RuleConfig:
        text = Path(path).read_text(encoding="utf-8")
        data = tomllib.loads(text) if str(path).endswith(".toml") else json.loads(text)
        return cls.from_dict(data.get("sdc", data))


IdentifierSource = Collection[str] | Callable[[Collection[str]], Collection[str]]


_STAT_WORDS = frozenset({"mean", "avg", "average", "sum", "total", "of"})


def variable_name(label: str) -> str:
    """`mean(HbA1c)`, `hba1c_mean`, `Mean HbA1c` -> `hba1c`: the variable a column is of, as the
    release manifest's bounds are keyed (``CheckContext.bounds``)."""
    words = [w for w in re.split(r"[^0-9a-z]+", label.lower()) if w and w not in _STAT_WORDS]
    return "_".join(words)


@dataclass
class CheckContext:
    """What the engine knows beyond the files: the project's earlier outputs and its identifiers.

    ``earlier``: paths or DataFrames of outputs already released or pending for the project.
    ``identifiers``: the project's pseudonyms and raw identifiers, as a set, or as a callable that
    takes candidate strings and returns those that are identifiers (for a registry lookup).
    ``sidecars``: output path -> its ``.sdc.json``, for callers that store files apart (snapshots).
    ``unavailable``: why the project's context could not be read; every file then fails, since the
    defaults may be laxer than the project's own rules.
    ``supporting``: paths of files that support a request but are not released: checked and shown,
    but left out of differencing (only what leaves can be differenced against).
    ``bounds``: variable name (lower case) -> (smallest, largest) value in the project's data, from the
    release manifest: lets the dominance rules prove a mean of many bounded values safe.
    """

    earlier: Sequence[str | Path | pd.DataFrame] = ()
    identifiers: IdentifierSource | None = None
    sidecars: Mapping[str, Path] = field(default_factory=dict)  # when metadata is not beside its file
    unavailable: str | None = None
    supporting: frozenset[str] = frozenset()
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def matching_identifiers(self, candidates: Collection[str]) -> set[str]:
        if self.identifiers is None or not candidates:
            return set()
        if callable(self.identifiers):
            return set(self.identifiers(candidates))
        known = self.identifiers
        return {c for c in candidates if c in known}


@dataclass
class Table:
    """A parsed table: body values plus what the engine could learn about each cell.

    ``values`` is float with NaN for hidden cells; ``hidden`` marks suppressed cells (blank or a
    marker such as ``<10``). ``col_stats``/``row_stats`` name the statistic of each column or row
    (``count``, ``mean``, ``sum``, ``min``, ``max``, ``median``, ``mode``, ``quantile``, ``std`` or None
    when unknown). ``counts`` holds the number of records behind each cell where known (NaN if not).
    """

    name: str
    frame: pd.DataFrame  # the table as read, labels included: used for microdata checks
    row_labels: list[str]
    col_labels: list[str]
    label_names: list[str]
    values: np.ndarray
    hidden: np.ndarray
    col_stats: list[str | None]
    row_stats: list[str | None] | None = None
    counts: np.ndarray | None = None
    margin_row: bool = False
    margin_col: bool = False
    rounding: int | None = None
    sums: np.ndarray | None = None
    top: np.ndarray | None = None  # (rows, cols, k): largest contributions per cell, descending
    minimum: np.ndarray | None = None
    current: bool = True  # False for the project's earlier outputs (context for differencing)
    row_offset: int = 0  # body row 0 is this many lines below the first line after the header
    col_positions: list[int] | None = None  # file column of each body column (None: the same)
    counts_in_file: bool = False  # counts read from the file itself, not claimed by its metadata

    def file_cells(self, cells: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Body positions as file coordinates (see the module docstring)."""
        cols = self.col_positions
        return [
            (r + self.row_offset, cols[c] if cols is not None and 0 <= c < len(cols) else c) for r, c in cells
        ]

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape  # type: ignore[return-value]

    def is_stat(self, *names: str) -> np.ndarray:
        """Boolean mask of cells whose statistic is one of ``names``, built without per-cell loops."""
        cols = np.isin(np.array(self.col_stats, dtype=object), names)
        mask = np.broadcast_to(cols[None, :], self.shape).copy()
        if self.row_stats is not None:
            rows = np.array(self.row_stats, dtype=object)
            has_row = np.array([s is not None for s in self.row_stats])
            mask[has_row, :] = np.isin(rows[has_row], names)[:, None]
        return mask

    def inner(self) -> tuple[slice, slice]:
        """Slices selecting the body without margins."""
        return (
            slice(0, self.shape[0] - int(self.margin_row)),
            slice(0, self.shape[1] - int(self.margin_col)),
        )


@dataclass
class Regression:
    name: str
    df_resid: float | None
    model: str = "regression"


@dataclass
class Opaque:
    """Something the engine cannot check (image, PDF, unknown format): review at best."""

    name: str
    reason: str


@dataclass
class Text:
    """Text a person reads. ``names`` (code, coefficient names) is checked for identifiers only."""

    name: str
    text: str
    kind: Literal["prose", "names"] = "prose"


@dataclass
class Parsed:
    """Everything found in one file, plus findings made while reading it."""

    items: list[Table | Regression | Opaque | Text] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

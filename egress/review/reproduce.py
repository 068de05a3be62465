"""Did a re-run reproduce a submitted output? The rule, apart from how the run is made.

A file is `identical` when the run wrote the same bytes; `equal` when both read as tables of the
same shape and labels whose numbers agree within a stated tolerance (floating-point noise: a
different BLAS, summation order); otherwise `differs` (with what differs) or `missing` (the run did
not write it). Figures and other binary files are reproduced only when identical; PNG metadata
(timestamps, software versions) differs between runs, so a figure is compared by its pixels.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

RTOL = 1e-9  # relative tolerance for numbers in tables
ATOL = 1e-12
TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}


class Outcome(StrEnum):
    IDENTICAL = "identical"
    EQUAL = "equal"  # equal as tables within the tolerance, or the same pixels
    DIFFERS = "differs"
    MISSING = "missing"

    @property
    def reproduced(self) -> bool:
        return self in (Outcome.IDENTICAL, Outcome.EQUAL)


@dataclass(frozen=True)
class Comparison:
    outcome: Outcome
    detail: str

    def to_dict(self) -> dict[str, object]:
        return {"outcome": self.outcome.value, "reproduced": self.outcome.reproduced, "detail": self.detail}


def _table(data: bytes, sep: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(data), sep=sep, dtype=str, keep_default_na=False)


def _compare_tables(submitted: pd.DataFrame, produced: pd.DataFrame) -> str | None:
    """None when equal within the tolerance, else what differs (no cell values: they may be data)."""
    if list(submitted.columns) != list(produced.columns):
        return f"columns differ: {len(submitted.columns)} submitted, {len(produced.columns)} re-run"
    if submitted.shape != produced.shape:
        return f"shape differs: {submitted.shape[0]} rows submitted, {produced.shape[0]} re-run"
    left = submitted.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    right = produced.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    numeric = ~np.isnan(left) & ~np.isnan(right)
    text_differs = ~numeric & (submitted.to_numpy() != produced.to_numpy())
    close = np.isclose(left, right, rtol=RTOL, atol=ATOL)
    bad = text_differs | (numeric & ~close)
    if bad.any():
        rows, cols = np.nonzero(bad)
        where = ", ".join(
            f"row {r + 1} column {submitted.columns[c]!r}" for r, c in list(zip(rows, cols, strict=True))[:5]
        )
        return f"{int(bad.sum())} cell(s) differ: {where}" + (" …" if bad.sum() > 5 else "")
    return None


def _pixels(data: bytes) -> bytes | None:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.mode.encode() + repr(image.size).encode() + image.tobytes()
    except Exception:  # not an image Pillow reads: compare bytes only
        return None


def compare(name: str, submitted: bytes, produced: bytes | None) -> Comparison:
    if produced is None:
        return Comparison(Outcome.MISSING, "the re-run did not write this file")
    if submitted == produced:
        return Comparison(Outcome.IDENTICAL, "byte for byte")
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in TABLE_SUFFIXES:
        try:
            differs = _compare_tables(
                _table(submitted, TABLE_SUFFIXES[suffix]), _table(produced, TABLE_SUFFIXES[suffix])
            )
        except (ValueError, pd.errors.ParserError) as exc:
            return Comparison(Outcome.DIFFERS, f"not comparable as tables ({type(exc).__name__})")
        if differs is None:
            return Comparison(Outcome.EQUAL, f"equal as tables (numbers within a relative {RTOL:g})")
        return Comparison(Outcome.DIFFERS, differs)
    if suffix in (".png", ".jpg", ".jpeg"):
        mine, theirs = _pixels(submitted), _pixels(produced)
        if mine is not None and mine == theirs:
            return Comparison(Outcome.EQUAL, "the same pixels (the files' metadata differ)")
        return Comparison(Outcome.DIFFERS, "the figure differs: compare them side by side")
    return Comparison(
        Outcome.DIFFERS, f"{len(submitted):,} bytes submitted, {len(produced):,} re-run, not the same"
    )

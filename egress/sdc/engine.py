"""``check_paths``: read each file, run every rule, compare tables with each other, build the report.

The report is the document of docs/architecture.md ("The disclosure report"):
``{"files": [{"path", "verdict", "findings": [...]}]}``. A file's verdict is the worst of its
findings; what the engine cannot check is ``review`` at best.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from egress.sdc import acro, metadata
from egress.sdc.differencing import differencing
from egress.sdc.embedded import hidden_part
from egress.sdc.model import (
    CheckContext,
    Finding,
    Opaque,
    Parsed,
    Regression,
    RuleConfig,
    Table,
    Text,
    Verdict,
    worst,
)
from egress.sdc.parse import MAX_COEFFICIENTS, read_path
from egress.sdc.rules import as_regression, microdata, regression, table_findings, text_findings
from egress.sdc.structure import interpret


@dataclass
class _FileReport:
    path: str
    findings: list[Finding] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        verdict: Verdict = worst(f.verdict for f in self.findings)
        return {"path": self.path, "verdict": verdict, "findings": [f.to_dict() for f in self.findings]}


def check_paths(
    paths: Iterable[str | Path], *, config: RuleConfig | None = None, context: CheckContext | None = None
) -> dict[str, Any]:
    """Check output files; raises FileNotFoundError for a path that does not exist."""
    config = config or RuleConfig()
    context = context or CheckContext()
    files = _expand(paths)
    context = dataclasses.replace(context, sidecars={**_paired_sidecars(files), **context.sidecars})
    reports: list[_FileReport] = []
    seen: set[Path] = set()
    for path in files:
        if path.resolve() in seen:
            continue
        for report in _check_file(path, config, context):
            if Path(report.path).resolve() not in seen:
                seen.add(Path(report.path).resolve())
                reports.append(report)
    earlier = _earlier_tables(context, config)
    owner = {t.name: r for r in reports for t in r.tables}
    released = [t for r in reports if r.path not in context.supporting for t in r.tables]
    for name, found in differencing(released + earlier, config).items():
        owner[name].findings.extend(_named(owner[name].path, name, found))
    if context.unavailable:
        for r in reports:
            r.findings.append(
                Finding(
                    "context",
                    "fail",
                    f"the project's context could not be read ({context.unavailable}): its own rules, "
                    "earlier outputs and pseudonyms were not used, so these checks may be laxer than "
                    "the project's; check again once the registry answers",
                )
            )
    return {"files": [r.to_dict() for r in reports]}


def _expand(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or directory")
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())  # beside a bundle too: all of it leaves
            out.extend(
                p for p in files if not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        else:
            out.append(path)
    return sorted(out, key=lambda p: p.name != "results.json")  # ACRO bundles first: they say more per file


def _paired_sidecars(files: list[Path]) -> dict[str, Path]:
    """Metadata submitted alongside its output (in another folder, as snapshots are) still counts."""
    by_name = {p.name.removesuffix(metadata.SUFFIX): p for p in files if p.name.endswith(metadata.SUFFIX)}
    return {str(p): by_name[p.name] for p in files if p.name in by_name}


def _named(path: str, name: str, findings: list[Finding]) -> list[Finding]:
    """Prefix findings of one part of a file (a notebook output, a second table) with that part."""
    if name == path:
        return findings
    part = name.removeprefix(path).strip()
    for f in findings:
        f.message = f"{part}: {f.message}"
    return findings


def _check_file(path: Path, config: RuleConfig, context: CheckContext) -> list[_FileReport]:
    if path.name.endswith(metadata.SUFFIX):
        return [
            _FileReport(
                str(path),
                [
                    Finding(
                        "metadata",
                        "fail",
                        "SDC metadata records each cell's largest contributions (individual values): "
                        "it is evidence for the checks, not an output to release",
                    )
                ],
            )
        ]
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return [_FileReport(str(path), [Finding("format", "review", f"not readable as JSON ({exc})")])]
        if acro.is_acro_results(data):
            return _check_acro(path, data, config, context)
    try:
        parsed = read_path(path, config)
    except Exception as exc:  # any unreadable file goes to a person, never silently passes
        return [_FileReport(str(path), [Finding("format", "review", f"could not be read: {exc}")])]
    return [_check_parsed(path, parsed, config, context)]


def _sidecar(path: Path, context: CheckContext) -> Path | None:
    candidate = context.sidecars.get(str(path)) or metadata.sidecar_of(path)
    return Path(candidate) if Path(candidate).is_file() else None


def _check_parsed(path: Path, parsed: Parsed, config: RuleConfig, context: CheckContext) -> _FileReport:
    report = _FileReport(str(path), list(parsed.findings))
    sidecar = _sidecar(path, context)
    for item in parsed.items:
        try:
            found = _check_item(path, item, sidecar, config, context, report)
        except Exception as exc:  # a rule tripping over an odd file sends it to a person, never passes it
            found = [
                Finding("engine", "review", f"could not be checked automatically ({exc.__class__.__name__})")
            ]
        report.findings += _named(str(path), item.name, found)
    return report


def _check_item(
    path: Path,
    item: Table | Regression | Opaque | Text,
    sidecar: Path | None,
    config: RuleConfig,
    context: CheckContext,
    report: _FileReport,
) -> list[Finding]:
    found: list[Finding] = []
    if isinstance(item, Table):
        item, found = _with_metadata(path, item, sidecar, config)
        as_reg = as_regression(item)
        if as_reg is not None:
            as_reg = _regression_metadata(as_reg, sidecar, found)
        # A coefficient table is a regression only with a model's structure: a residual df and no more
        # rows than a model has coefficients. Its rows are still read as possible row-level data.
        if as_reg is not None and as_reg.df_resid is not None and item.shape[0] <= MAX_COEFFICIENTS:
            found += microdata(item, config, context)
            item = as_reg
        elif as_reg is not None:
            found.append(
                Finding(
                    "regression",
                    "review",
                    "coefficients and standard errors without a model's residual degrees of freedom (or "
                    f"more than {MAX_COEFFICIENTS} rows): checked as a table; show Df Residuals",
                )
            )
    if isinstance(item, Table):
        if item.values.size == 0:
            found.append(Finding("format", "review", "a table without numeric cells: a checker must read it"))
        found += table_findings(item, config, context)
        for f in found:
            f.cells = item.file_cells(f.cells)
        report.tables.append(item)
    elif isinstance(item, Regression):
        found += regression(item, config)
    elif isinstance(item, Text):
        found += text_findings(item, context)
    elif isinstance(item, Opaque):
        found.append(Finding("format", "review", item.reason))
    return found


def _with_metadata(
    path: Path, table: Table, sidecar: Path | None, config: RuleConfig
) -> tuple[Table, list[Finding]]:
    if sidecar is None or table.name != str(path):
        return table, []
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return table, [Finding("metadata", "fail", f"SDC metadata {sidecar.name} is unreadable ({exc})")]
    if meta.get("kind") == "regression":
        return table, []  # a coefficient table: _regression_metadata compares its df
    labelled = interpret(table.frame, table.name, config, label_count=len(meta.get("label_names", [])))
    found = metadata.apply(labelled, meta, metadata.sha256_file(path), config)
    return (table if found else labelled), found


def _regression_metadata(item: Regression, sidecar: Path | None, found: list[Finding]) -> Regression:
    """A coefficient table's own df column must agree with the df its metadata records."""
    if sidecar is None:
        return item
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    recorded = meta.get("df_resid")
    if recorded is not None and item.df_resid is not None and float(recorded) != item.df_resid:
        found.append(
            Finding(
                "metadata",
                "fail",
                f"df_resid in the file ({item.df_resid:g}) differs from its "
                f"SDC metadata ({float(recorded):g})",
            )
        )
    if item.df_resid is None and recorded is not None:
        item.df_resid = float(recorded)
    return item


def _check_acro(
    path: Path, data: dict[str, Any], config: RuleConfig, context: CheckContext
) -> list[_FileReport]:
    index = _FileReport(str(path))
    reports = [index]
    for where, value in acro.extra_parts(data):
        finding, items = hidden_part(value, where, config)
        index.findings.append(finding)
        index.findings += _item_findings(path, items, config, context, index)
    for uid, output in data["results"].items():
        index.findings += text_findings(
            Text(f"{path} [{uid}]", acro.acro_text(uid, output), "names"), context
        )
        if not output.get("files"):
            index.findings.append(acro.acro_finding(uid, output, None))
    for uid, output, file, listed, sdc in acro.files_of(data, path.parent):
        verdict = acro.acro_finding(uid, output, sdc)
        if file is None:
            index.findings += [
                verdict,
                Finding(
                    "acro",
                    "fail",
                    f"{uid} lists a file outside its bundle ({listed[:200]!r}); it was not read: "
                    "ACRO writes only names inside the bundle's folder",
                ),
            ]
            continue
        if not file.is_file():
            reports.append(
                _FileReport(
                    str(file), [verdict, Finding("acro", "review", "listed in results.json but missing")]
                )
            )
            continue
        try:
            parsed = read_path(file, config)
        except Exception as exc:
            reports.append(
                _FileReport(str(file), [verdict, Finding("format", "review", f"could not be read: {exc}")])
            )
            continue
        as_reg = acro.regression_of(uid, output, str(file))
        if as_reg is not None:
            parsed = Parsed([as_reg, *parsed.items], parsed.findings)  # the file is still checked as data
        acro.apply_statistic(parsed, acro.statistic(output))
        report = _check_parsed(file, parsed, config, context)
        if report.tables:  # ACRO counts cells in the table's body
            verdict.cells = report.tables[0].file_cells(verdict.cells)
        report.findings.insert(0, verdict)
        reports.append(report)
    if data["results"]:
        index.findings.append(
            Finding(
                "acro",
                "pass",
                f"ACRO results.json with {len(data['results'])} output(s); each listed file is checked "
                "on its own",
            )
        )
    else:
        index.findings.append(
            Finding("acro", "review", "ACRO results.json without outputs: nothing to check")
        )
    return reports


def _item_findings(
    path: Path,
    items: list[Table | Regression | Opaque | Text],
    config: RuleConfig,
    context: CheckContext,
    report: _FileReport,
) -> list[Finding]:
    found: list[Finding] = []
    for item in items:
        found += _named(str(path), item.name, _check_item(path, item, None, config, context, report))
    return found


def _earlier_tables(context: CheckContext, config: RuleConfig) -> list[Table]:
    tables: list[Table] = []
    for i, item in enumerate(context.earlier):
        if isinstance(item, pd.DataFrame):
            frame = item if isinstance(item.index, pd.RangeIndex) else item.reset_index()
            found: list[Table] = [interpret(frame, f"earlier output {i + 1}", config)]
        else:
            try:
                found = [t for t in read_path(Path(item), config).items if isinstance(t, Table)]
            except Exception:  # an unreadable earlier output cannot take part in differencing
                found = []
        for table in found:
            table.current = False
            tables.append(table)
    return tables

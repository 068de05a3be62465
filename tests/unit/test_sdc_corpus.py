"""The SDC corpus: every case in tests/sdc_corpus/expected.json gives the expected verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from egress.sdc import CheckContext, check_paths

CORPUS = Path(__file__).resolve().parents[1] / "sdc_corpus"
CASES = json.loads((CORPUS / "expected.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_corpus_case(case, monkeypatch):
    monkeypatch.chdir(CORPUS)  # reported paths are the relative paths given
    ctx = case.get("context", {})
    context = CheckContext(
        earlier=ctx.get("earlier", ()),
        identifiers=set(ctx.get("identifiers", [])) or None,
        supporting=frozenset(ctx.get("supporting", [])),
    )
    report = {f["path"]: f for f in check_paths(case["paths"], context=context)["files"]}
    if "all" in case:
        assert {p: f["verdict"] for p, f in report.items()} == dict.fromkeys(report, case["all"]), report
    for path, want in case.get("expect", {}).items():
        got = report[path]
        assert got["verdict"] == want["verdict"], got
        rules = {(f["rule"], f["verdict"]) for f in got["findings"]}
        for rule, verdict in want.get("rules", {}).items():
            assert (rule, verdict) in rules, got


def test_corpus_covers_every_rule():
    rules = {r for c in CASES for e in c.get("expect", {}).values() for r in e.get("rules", {})}
    assert {
        "threshold",
        "zeros",
        "dominance",
        "extremes",
        "regression",
        "microdata",
        "differencing",
        "secondary_suppression",
        "rounding",
        "metadata",
        "acro",
        "hidden",
    } <= rules


def test_verdict_is_worst_finding_and_document_shape(monkeypatch):
    monkeypatch.chdir(CORPUS)
    for entry in check_paths(["files", "acro_bundle"])["files"]:
        assert set(entry) == {"path", "verdict", "findings"}
        order = ["pass", "review", "fail"]
        worst = max((order.index(f["verdict"]) for f in entry["findings"]), default=0)
        assert entry["verdict"] == order[worst]
        for f in entry["findings"]:
            assert set(f) == {"rule", "verdict", "message", "cells"}
            assert all(len(cell) == 2 for cell in f["cells"])

"""SDC engine rules, settings, parsers and the `tre egress check` command."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from egress.sdc import CheckContext, RuleConfig, check_paths
from egress.sdc.differencing import _interval
from egress.sdc.rules import complements
from egress.sdc.structure import interpret, stat_of


def table(frame: pd.DataFrame, config: RuleConfig | None = None):
    return interpret(frame, "t", config or RuleConfig())


def check(tmp_path, name: str, text: str, **kw) -> dict:
    path = tmp_path / name
    path.write_text(text)
    return check_paths([path], **kw)["files"][0]


def rules_of(entry: dict) -> dict[str, str]:
    """Worst verdict per rule."""
    order = ["pass", "review", "fail"]
    out: dict[str, str] = {}
    for f in entry["findings"]:
        out[f["rule"]] = max(out.get(f["rule"], "pass"), f["verdict"], key=order.index)
    return out


def test_config_defaults_and_project_overrides(tmp_path):
    c = RuleConfig()
    assert (c.threshold, c.dominance_n, c.dominance_k, c.p_percent, c.min_df_resid) == (10, 2, 90.0, 10.0, 10)
    c = RuleConfig.from_dict({"threshold": 5, "dominance": {"n": 3, "k": 80, "p": 15}})
    assert (c.threshold, c.dominance_n, c.dominance_k, c.p_percent) == (5, 3, 80, 15)
    with pytest.raises(ValueError, match="unknown SDC setting"):
        RuleConfig.from_dict({"treshold": 5})
    toml = tmp_path / "sdc.toml"
    toml.write_text("[sdc]\nthreshold = 20\n")
    assert RuleConfig.from_file(toml).threshold == 20


def test_threshold_follows_config(tmp_path):
    text = "region,F,M\nN,12,15\nS,14,11\n"
    assert check(tmp_path, "a.csv", text)["verdict"] == "pass"
    assert check(tmp_path, "a.csv", text, config=RuleConfig(threshold=13))["verdict"] == "fail"


@pytest.mark.parametrize(
    ("name", "stat"),
    [
        ("n", "count"),
        ("N", "count"),
        ("freq", "count"),
        ("bmi_mean", "mean"),
        ("50%", "median"),
        ("max", "max"),
        ("bmi mode", "mode"),
        ("25%", "quantile"),
        ("region", None),
    ],
)
def test_statistic_names(name, stat):
    assert stat_of(name) == stat


def test_structure_of_pandas_outputs():
    ct = table(pd.read_csv(pd.io.common.StringIO("age,F,M,All\n1,12,15,27\n2,14,11,25\nAll,26,26,52\n")))
    assert (ct.margin_row, ct.margin_col, ct.col_labels, ct.row_labels[-1]) == (
        True,
        True,
        ["F", "M", "All"],
        "All",
    )
    gb = table(pd.read_csv(pd.io.common.StringIO(",age,sex,n\n0,1,F,12\n1,1,M,3\n2,2,F,40\n")))
    assert gb.label_names == ["age", "sex"] and gb.col_stats == ["count"]
    yn = table(pd.read_csv(pd.io.common.StringIO("smoker,Y,N\nyes,12,15\nno,14,11\n")))
    assert yn.col_labels == ["Y", "N"] and yn.col_stats == ["count", "count"]
    hidden = table(pd.read_csv(pd.io.common.StringIO("r,a,b\nx,<10,15\ny,*,\n")))
    assert hidden.hidden.tolist() == [[True, False], [True, True]]


def test_complements_hide_a_second_cell_in_every_line():
    values = np.array([[3.0, 50, 60], [40, 45, 70], [55, 65, 80]])
    primary = np.zeros_like(values, bool)
    primary[0, 0] = True
    extra = complements(values, primary, rows=True, cols=True)
    hidden = primary | extra
    assert set(hidden.sum(axis=1)) <= {0, 2, 3} and set(hidden.sum(axis=0)) <= {0, 2, 3}
    assert extra.sum() == 3  # the smallest rectangle: (0,1), (1,0), (1,1)


def test_recomputable_suppressed_cell(tmp_path):
    entry = check(tmp_path, "m.csv", "age,F,M,All\n1,,15,18\n2,14,11,25\nAll,17,26,43\n")
    found = [f for f in entry["findings"] if f["rule"] == "secondary_suppression"]
    # cells are file coordinates: row 0 after the header, column 1 (F; column 0 holds the labels)
    assert any("= 3" in f["message"] and f["cells"] == [[0, 1]] for f in found)


def test_totals_excluding_hidden_cells_are_not_recomputable(tmp_path):
    # two hidden cells per line: totals give only their sums
    text = "age,F,M,All\n1,,,40\n2,,,50\n3,30,40,70\nAll,60,100,160\n"
    entry = check(tmp_path, "m.csv", text)
    assert not any("recomputed from the margins" in f["message"] for f in entry["findings"])


def test_round_numbers_by_chance_are_not_rounding():
    assert table(pd.DataFrame({"r": ["N", "S"], "F": [100, 90], "M": [120, 80]})).rounding is None
    rounded = pd.DataFrame({"r": list("abc"), "F": [15, 20, 35], "M": [40, 55, 10]})
    assert table(rounded).rounding == 5


def test_intervals():
    assert _interval("18-39") == (18, 40)
    assert _interval("<18") == (-np.inf, 18)
    assert _interval("65+") == (65, np.inf)
    assert _interval("[18, 40)") == (18, 40)
    assert _interval("(17, 39]") == (18, 40)
    assert _interval("North") is None


def test_differencing_needs_nesting_consistent_signs(tmp_path):
    a = tmp_path / "a.csv"
    b = tmp_path / "b.csv"
    a.write_text("r,F,M\nN,100,120\nS,90,80\n")
    b.write_text("r,F,M\nN,103,118\nS,91,82\n")  # mixed signs: different populations, not nested
    assert {f["verdict"] for f in check_paths([a, b])["files"]} == {"pass"}


def test_identifiers_by_callable_and_in_text(tmp_path):
    seen = []

    def lookup(candidates):
        seen.append(len(candidates))
        return {c for c in candidates if c == "9434765919"}

    ctx = CheckContext(identifiers=lookup)
    entry = check(tmp_path, "notes.txt", "Patient 9434765919 was the outlier", context=ctx)
    assert rules_of(entry)["microdata"] == "fail" and seen


def test_text_with_and_without_numbers(tmp_path):
    assert check(tmp_path, "a.txt", "The model converged.")["verdict"] == "pass"
    assert check(tmp_path, "b.txt", "Mean age was 54.2")["verdict"] == "review"


def test_markdown_and_html_small_cells(tmp_path):
    md = "Counts\n\n| region | F | M |\n|---|---|---|\n| N | 12 | 4 |\n| S | 30 | 31 |\n"
    assert rules_of(check(tmp_path, "t.md", md))["threshold"] == "fail"
    html = pd.DataFrame({"F": [12, 30], "M": [4, 31]}, index=pd.Index(["N", "S"], name="region")).to_html()
    entry = check(tmp_path, "t.html", html)
    # file coordinates: N's row, column M (after the region label column)
    assert rules_of(entry)["threshold"] == "fail" and entry["findings"][0]["cells"] == [[0, 2]]


def test_json_orients(tmp_path):
    frame = pd.DataFrame({"F": [12, 30], "M": [4, 31]}, index=["N", "S"])
    for orient in ("split", "columns", "index", "records"):
        text = (
            frame.reset_index().to_json(orient=orient)
            if orient == "records"
            else frame.to_json(orient=orient)
        )
        entry = check(tmp_path, f"{orient}.json", text)
        assert rules_of(entry).get("threshold") == "fail", (orient, entry)


def test_regression_html_and_json(tmp_path):
    html = (
        "<table class='simpletable'><tr><th>Df Residuals:</th><td>4</td></tr></table> OLS Regression Results"
    )
    assert rules_of(check(tmp_path, "r.html", html))["regression"] == "fail"
    assert rules_of(check(tmp_path, "r.json", json.dumps({"params": {"x": 1.0}})))["regression"] == "review"
    assert (
        rules_of(
            check(tmp_path, "r2.json", json.dumps({"params": {"x": 1.0}, "bse": {"x": 0.1}, "df_resid": 50}))
        )["regression"]
        == "pass"
    )


def test_unreadable_file_is_review(tmp_path):
    entry = check(tmp_path, "broken.json", "{not json")
    assert entry["verdict"] == "review"


def test_cli_json_and_exit_codes(tmp_path):
    from hub.cli import app

    path = tmp_path / "t.csv"
    path.write_text("region,F,M\nN,12,4\nS,30,31\n")
    runner = CliRunner()
    out = runner.invoke(app, ["egress", "check", str(path), "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["files"][0]["verdict"] == "fail"
    out = runner.invoke(app, ["egress", "check", str(path)])
    assert out.exit_code == 0 and "threshold" in out.stdout
    out = runner.invoke(app, ["egress", "check", str(tmp_path / "missing.csv"), "--json"])
    assert out.exit_code != 0
    cfg = tmp_path / "sdc.json"
    cfg.write_text(json.dumps({"threshold": 3}))
    out = runner.invoke(app, ["egress", "check", str(path), "--json", "--config", str(cfg)])
    assert json.loads(out.stdout)["files"][0]["verdict"] == "pass"


def test_metadata_found_when_submitted_from_another_folder(tmp_path):
    from tre_notebook import sdc

    frame = pd.DataFrame({"g": ["a"] * 30 + ["b"] * 30, "x": np.arange(60.0)})
    saved = sdc.pivot_table(frame, "x", "g", aggfunc="mean").save(tmp_path / "m.csv")
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    table = saved.rename(tmp_path / "1" / "m.csv")
    side = (tmp_path / "m.csv.sdc.json").rename(tmp_path / "2" / "m.csv.sdc.json")
    report = {f["path"]: f for f in check_paths([table, side])["files"]}
    assert report[str(table)]["verdict"] == "pass"  # dominance checked from the metadata
    assert report[str(side)]["verdict"] == "fail"  # but the metadata itself never leaves
    assert check_paths([table])["files"][0]["verdict"] == "review"  # without it: contributions unknown


def test_project_pseudonym_lookup_reads_release_parquet(tmp_path):
    from egress.review.project_context import pseudonym_lookup

    data = tmp_path / "patients.parquet"
    pd.DataFrame({"nhs_number": ["a1b2c3d4e5f60718", "ffff000011112222"], "age": [40, 50]}).to_parquet(data)
    lookup = pseudonym_lookup([(data, "nhs_number"), (tmp_path / "gone.parquet", "x")])
    assert lookup({"ffff000011112222", "North", "12"}) == {"ffff000011112222"}


def test_cli_project_context_unavailable_fails_visibly(tmp_path, tre_root):
    """No registry for the project: the check still runs, and fails saying why (never quieter)."""
    from hub.cli import app

    path = tmp_path / "t.csv"
    path.write_text("region,F,M\nN,12,14\nS,30,31\n")
    out = CliRunner().invoke(app, ["egress", "check", str(path), "--json", "--project", "nope"])
    assert out.exit_code == 0
    entry = json.loads(out.stdout)["files"][0]
    assert entry["verdict"] == "fail"
    assert ("context", "fail") in {(f["rule"], f["verdict"]) for f in entry["findings"]}
    plain = CliRunner().invoke(app, ["egress", "check", str(path), "--json"])  # no project: no such finding
    assert json.loads(plain.stdout)["files"][0]["verdict"] == "pass"


def test_cli_project_context_from_registry(make_world, tmp_path):
    """--project compares with the project's released outputs, knows its pseudonyms and the bounds of
    its numeric variables."""
    import hashlib

    from egress.review.models import EgressFile, EgressGroup, EgressRequest
    from egress.review.storage import BlobStore
    from hub.cli import app
    from hub.kernel.db import session_scope
    from tests.fixtures_registry import RESEARCHER, publish_release

    world = make_world()
    released = b"region,F,M\nN,103,121\nS,94,87\n"
    sha = hashlib.sha256(released).hexdigest()
    blob = BlobStore(world.settings.egress_dir).path(sha)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(released)
    with session_scope(world.settings) as s:
        req = EgressRequest(project_slug=world.project, author=RESEARCHER, title="t1", state="released")
        s.add(req)
        s.flush()
        group = EgressGroup(request_id=req.id, name="tables")
        s.add(group)
        s.flush()
        s.add(EgressFile(request_id=req.id, group_id=group.id, relpath="t1.csv", name="t1.csv", kind="output",
                         sha256=sha, size=len(released)))  # fmt: skip
    release = publish_release(world.settings, world.project)
    (release / "data" / "diabetes").mkdir(parents=True)
    pd.DataFrame({"national_id": ["9f86d081884c7d65"]}).to_parquet(
        release / "data" / "diabetes" / "patients.parquet"
    )
    manifest = {
        "datasets": [
            {"name": "diabetes", "tables": [{"name": "patients", "pseudonymised": ["national_id"]}]}
        ],
        "bounds": {"diabetes/hba1c/hba1c": [20.0, 150.0]},  # what provisioning records
    }
    (release / "manifest.json").write_text(json.dumps(manifest))

    new = tmp_path / "t2.csv"
    new.write_text("region,F,M\nN,104,121\nS,94,87\n")  # one more record than the released table
    ids = tmp_path / "ids.csv"
    ids.write_text("who,n\n9f86d081884c7d65,12\nother,15\n")
    means = tmp_path / "means.csv"
    means.write_text("region,n,mean_hba1c\nNorth,2000,53.1\nSouth,1500,55.4\n")
    out = CliRunner().invoke(
        app, ["egress", "check", str(new), str(ids), str(means), "--json", "--project", world.project]
    )
    assert out.exit_code == 0, out.output
    assert "unavailable" not in out.stderr, out.stderr
    report = {f["path"]: f for f in json.loads(out.stdout)["files"]}
    assert rules_of(report[str(new)])["differencing"] == "fail"
    assert rules_of(report[str(ids)])["microdata"] == "fail"
    assert rules_of(report[str(means)])["dominance"] == "pass"  # proved with the release's bounds


MEANS = "region,n,mean_hba1c\nNorth,2000,53.1\nSouth,1500,55.4\nEast,3,61.0\n"


def dominance_of(entry: dict) -> dict[str, list]:
    return {f["verdict"]: f["cells"] for f in entry["findings"] if f["rule"] == "dominance"}


def test_bounded_variables_prove_large_means_undominated_and_nothing_else(tmp_path):
    """A mean of 2,000 HbA1c values, all within the release's [20, 150], cannot be dominated by one
    or two people; 3 values can (two of them may be 150 each: 300 of 183). Without the release's
    bounds, with a negative lower bound, or for another variable: review, as before."""
    bounded = CheckContext(bounds={"hba1c": (20.0, 150.0)})
    found = dominance_of(check(tmp_path, "means.csv", MEANS, context=bounded))
    assert found == {"pass": [[0, 2], [1, 2]], "review": [[2, 2]]}, found
    assert dominance_of(check(tmp_path, "means.csv", MEANS)) == {"review": [[0, 2], [1, 2], [2, 2]]}
    signed = CheckContext(bounds={"hba1c": (-5.0, 150.0)})
    assert "pass" not in dominance_of(check(tmp_path, "means.csv", MEANS, context=signed))
    other = CheckContext(bounds={"glucose": (0.0, 40.0)})
    assert "pass" not in dominance_of(check(tmp_path, "means.csv", MEANS, context=other))


def test_release_bounds_become_variable_bounds_widest_first():
    from egress.review.project_context import variable_bounds

    manifest = {
        "bounds": {"diabetes/hba1c/hba1c": [20, 120], "diabetes/visits/HbA1c": [15, 150], "x/y/age": [0, 99]}
    }
    assert variable_bounds(manifest) == {"hba1c": (15.0, 150.0), "age": (0.0, 99.0)}
    assert variable_bounds({}) == {}

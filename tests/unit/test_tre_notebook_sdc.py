"""tre_notebook.sdc: the analysis library researchers use, and what the engine makes of its output."""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import numpy as np
import pandas as pd
import pytest
from tre_notebook import sdc

from egress.sdc import check_paths


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    n = 4000
    frame = pd.DataFrame(
        {
            "age_band": rng.integers(1, 6, n),
            "sex": rng.choice(["F", "M"], n),
            "region": rng.choice(["N", "S", "E", "W"], n),
            "cost": np.round(rng.lognormal(5, 0.5, n), 2),
        }
    )
    small = (frame.age_band == 5) & (frame.sex == "F")
    keep = frame[~small | (small.cumsum() <= 3)]  # three records in (5, F)
    return keep.reset_index(drop=True)


def verdicts(path) -> dict[str, str]:
    """Worst verdict per rule."""
    order = ["pass", "review", "fail"]
    out: dict[str, str] = {}
    for f in check_paths([path])["files"][0]["findings"]:
        out[f["rule"]] = max(out.get(f["rule"], "pass"), f["verdict"], key=order.index)
    return out


def test_crosstab_matches_pandas_with_margins(df):
    ours = sdc.crosstab(df, "age_band", "sex", margins=True).table
    theirs = pd.crosstab(df.age_band, df.sex, margins=True)
    assert ours.to_numpy().tolist() == theirs.to_numpy().tolist()
    assert [str(i) for i in ours.index] == [str(i) for i in theirs.index]


def test_duckdb_relation_and_dataframe_agree(df):
    rel = duckdb.connect().from_df(df)  # its own connection: other tests may change the default one
    a = sdc.pivot_table(rel, "cost", "region", "sex", aggfunc="mean", margins=True).table
    b = sdc.pivot_table(df, "cost", "region", "sex", aggfunc="mean", margins=True).table
    pd.testing.assert_frame_equal(a, b)
    expected = df.pivot_table(values="cost", index="region", columns="sex", aggfunc="mean", margins=True)
    np.testing.assert_allclose(a.to_numpy(float), expected.to_numpy(float), rtol=1e-9)


def test_metadata_counts_and_top_contributions(df):
    t = sdc.pivot_table(df, "cost", "region", "sex", aggfunc="sum")
    cell = df[(df.region == "E") & (df.sex == "F")].cost.sort_values(ascending=False)
    i, j = list(t.table.index).index("E"), list(t.table.columns).index("F")
    assert t.counts.iloc[i, j] == len(cell)
    assert t.top[i, j].tolist() == pytest.approx(cell.head(2).tolist())
    assert t.sums.iloc[i, j] == pytest.approx(cell.sum())


def test_suppression_primary_and_secondary_then_engine_passes(df, tmp_path):
    t = sdc.crosstab(df, "age_band", "sex", margins=True, suppress=True)
    hidden = t.table.isna()
    assert hidden.loc[5, "F"]
    assert hidden.iloc[:-1, :-1].sum(axis=1).isin([0, 2]).all()  # no lone hidden cell in a row
    assert hidden.iloc[:-1, :-1].sum(axis=0).isin([0, 2, 3, 4, 5]).all()
    assert t.table.loc["All", "All"] == len(df)
    path = t.save(tmp_path / "ct.csv")
    assert (tmp_path / "ct.csv.sdc.json").exists()
    assert check_paths([path])["files"][0]["verdict"] == "pass"


def test_unsuppressed_small_cell_fails_and_secondary_is_suggested(df, tmp_path):
    path = sdc.crosstab(df, "age_band", "sex", margins=True).save(tmp_path / "ct.csv")
    got = verdicts(path)
    assert got["threshold"] == "fail" and got["secondary_suppression"] == "fail"


def test_rounding(df, tmp_path):
    t = sdc.crosstab(df, "region", "sex", round_to=5)
    assert (t.table.to_numpy() % 5 == 0).all()
    path = t.save(tmp_path / "r.csv")
    assert verdicts(path).get("rounding") == "pass"


def test_dominance_suppressed_by_library_and_caught_by_engine(df, tmp_path):
    rich = pd.concat([df, pd.DataFrame({"age_band": [1], "sex": ["F"], "region": ["N"], "cost": [1e7]})])
    raw = sdc.pivot_table(rich, "cost", "region", "sex", aggfunc="sum")
    assert verdicts(raw.save(tmp_path / "raw.csv"))["dominance"] == "fail"
    safe = sdc.pivot_table(rich, "cost", "region", "sex", aggfunc="sum", suppress=True)
    assert np.isnan(safe.table.loc["N", "F"])
    assert check_paths([safe.save(tmp_path / "safe.csv")])["files"][0]["verdict"] == "pass"


def test_summary_mode_over_small_group_fails(df, tmp_path):
    one = pd.concat([df, pd.DataFrame({"region": ["Isle"], "cost": [99.5], "age_band": [1], "sex": ["F"]})])
    path = sdc.summary(one, "cost", by="region", stats=("count", "mean", "mode")).save(tmp_path / "s.csv")
    assert verdicts(path)["extremes"] == "fail"


def test_tampered_metadata_and_table_are_caught(df, tmp_path):
    path = sdc.crosstab(df, "region", "sex").save(tmp_path / "t.csv")
    side = tmp_path / "t.csv.sdc.json"
    meta = json.loads(side.read_text())
    meta["values"][0][0] += 1  # metadata no longer describes the file
    side.write_text(json.dumps(meta))
    assert verdicts(path)["metadata"] == "fail"
    path = sdc.crosstab(df, "region", "sex").save(tmp_path / "t.csv")
    path.write_text(path.read_text().replace("F,M", "F,M "))
    assert verdicts(path)["metadata"] == "fail"


def test_regressions_and_their_degrees_of_freedom(df, tmp_path):
    fit = sdc.ols(df, "cost ~ C(sex) + age_band")
    assert fit.df_resid == len(df) - 3
    assert verdicts(fit.save(tmp_path / "ols.csv"))["regression"] == "pass"
    assert verdicts(fit.save(tmp_path / "ols.txt"))["regression"] == "pass"
    tiny = sdc.ols(df.head(6), "cost ~ age_band")
    assert verdicts(tiny.save(tmp_path / "tiny.txt"))["regression"] == "fail"
    logit = sdc.logit(df.assign(high=(df.cost > 150).astype(int)), "high ~ age_band")
    assert logit.df_resid == len(df) - 2


def test_importable_without_statsmodels():
    code = (
        "import sys; sys.modules['statsmodels'] = None\n"
        "import pandas as pd; from tre_notebook import sdc\n"
        "print(sdc.crosstab(pd.DataFrame({'a': [1] * 12, 'b': ['x'] * 12}), 'a', 'b').table.iloc[0, 0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "12"


def test_key_names_never_clash_and_two_column_keys_flatten(df, tmp_path):
    frame = df.rename(columns={"region": "s"})  # "s" was once an internal name
    t = sdc.crosstab(frame, ["age_band", "sex"], "s", margins=True)
    assert t.table.loc[("All", ""), "All"] == len(df)
    wide = sdc.crosstab(df, "age_band", ["sex", "region"], margins=True, suppress=True)
    assert "F / N" in wide.table.columns
    got = verdicts(wide.save(tmp_path / "w.csv"))
    assert "fail" not in got.values() and got.get("zeros") == "review"  # (5, F) leaves empty cells


def test_pandas_two_level_headers_are_read(df, tmp_path):
    path = tmp_path / "mh.csv"
    pd.crosstab(df.age_band, [df.sex, df.region]).to_csv(path)
    entry = check_paths([path])["files"][0]
    assert any(f["rule"] == "threshold" for f in entry["findings"])  # the (5, F) cells are small

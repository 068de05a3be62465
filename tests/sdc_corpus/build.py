"""Rebuild the SDC corpus: ``python tests/sdc_corpus/build.py`` (deterministic, seeded).

Each file is a realistic output a researcher might submit; ``expected.json`` (written by hand) holds
the verdict and the findings the engine must give. ``acro_bundle/`` is written by ACRO 1.0.2 itself
(``.venv-acro/bin/python tests/sdc_corpus/make_acro_bundle.py``) and kept as ACRO wrote it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from tre_notebook import sdc

HERE = Path(__file__).parent
F = HERE / "files"


def cohort(n: int = 3000, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age_band": rng.integers(1, 7, n),
            "age": rng.integers(0, 90, n),
            "sex": rng.choice(["F", "M"], n),
            "region": rng.choice(["North", "South", "East", "West"], n),
            "bmi": np.round(rng.normal(27, 4, n), 1),
            "cost": np.round(rng.lognormal(6, 0.6, n), 2),
            "smoker": rng.choice([0, 1], n),
        }
    )


def notebook(outputs: list[dict]) -> dict:
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            {"cell_type": "code", "execution_count": i + 1, "metadata": {}, "source": "...", "outputs": [o]}
            for i, o in enumerate(outputs)
        ],
    }


def main() -> None:
    F.mkdir(exist_ok=True)
    df = cohort()
    ct = pd.crosstab(df.region, df.sex, margins=True)

    # --- safe outputs: must pass -------------------------------------------------------------
    ct.to_csv(F / "safe_crosstab_margins.csv")
    df.groupby(["region", "sex"]).size().reset_index(name="n").to_csv(F / "safe_groupby_counts.csv")
    pd.crosstab(df.age_band, df.sex).to_csv(F / "safe_crosstab_numeric_index.tsv", sep="\t")
    sdc.pivot_table(df, "cost", "region", "sex", aggfunc="mean", margins=True, suppress=True).save(
        F / "safe_lib_means.csv"
    )
    sdc.crosstab(df, "age_band", "smoker", margins=True, suppress=True).save(F / "safe_lib_crosstab.csv")
    ((pd.crosstab(df.region, df.age_band) / 5).round() * 5).astype(int).to_csv(F / "safe_rounded_base5.csv")
    (F / "safe_crosstab_split.json").write_text(pd.crosstab(df.region, df.sex).to_json(orient="split"))
    (F / "safe_crosstab_columns.json").write_text(pd.crosstab(df.region, df.sex).to_json(orient="columns"))
    counts = df.groupby("region").size().reset_index(name="count")
    (F / "safe_counts_records.json").write_text(counts.to_json(orient="records"))
    (F / "safe_crosstab.md").write_text(
        "# Patients by region and sex\n\n" + _markdown(pd.crosstab(df.region, df.sex))
    )
    (F / "safe_crosstab.html").write_text(pd.crosstab(df.region, df.sex).to_html())
    df.groupby(["region", "smoker"]).size().rename("n").to_frame().to_parquet(F / "safe_counts.parquet")
    ols = sdc.ols(df, "bmi ~ cost + C(sex)")
    ols.save(F / "safe_ols_summary.txt")
    (F / "safe_ols_summary.html").write_text(ols.result.summary().as_html())
    ols.save(F / "safe_lib_ols_coefficients.csv")
    (F / "safe_notebook.ipynb").write_text(
        json.dumps(
            notebook(
                [
                    {"output_type": "stream", "name": "stdout", "text": ["Loaded the cohort.\n"]},
                    {
                        "output_type": "execute_result",
                        "execution_count": 2,
                        "metadata": {},
                        "data": {"text/html": pd.crosstab(df.region, df.sex).to_html(), "text/plain": "..."},
                    },
                ]
            )
        )
    )

    # --- threshold, zeros, rounding -----------------------------------------------------------
    small = pd.crosstab(df.region, df.sex)
    small.loc["East", "F"] = 4
    small.to_csv(F / "threshold_small_cell.csv")
    zeros = pd.crosstab(df.region, df.sex)
    zeros.loc["West", "M"] = 0
    zeros.to_csv(F / "zeros_cell.csv")
    rounded = (pd.crosstab(df.region, df.age_band) / 5).round().astype(int) * 5
    rounded.loc["East", 3] = 5
    rounded.to_csv(F / "rounding_small_cell.csv")

    # --- dominance (library metadata) ---------------------------------------------------------
    rich = pd.concat([df, pd.DataFrame({"region": ["North"], "sex": ["F"], "cost": [5_000_000.0]})])
    rich["age_band"], rich["bmi"], rich["smoker"] = 1, 27.0, 0
    sdc.pivot_table(rich, "cost", "region", "sex", aggfunc="sum").save(F / "dominance_sum.csv")
    neg = df.assign(change=df.cost - 400)
    sdc.pivot_table(neg, "change", "region", aggfunc="mean").save(F / "dominance_negative.csv")
    df.groupby("region").cost.agg(["sum", "count"]).to_csv(F / "dominance_unknown_sum.csv")

    # --- extremes / single values -------------------------------------------------------------
    one = pd.concat(
        [df, pd.DataFrame({"region": ["Islands"], "bmi": [41.3], "sex": ["F"]})], ignore_index=True
    )
    one.groupby("region").bmi.agg(bmi_mode=lambda s: s.mode().iloc[0], n="size").to_csv(
        F / "mode_one_record.csv"
    )
    sdc.summary(one, "bmi", by="region", stats=("count", "mode")).save(F / "mode_one_record_lib.csv")
    df.groupby("region").bmi.agg(["max", "count"]).to_csv(F / "extremes_max.csv")
    df.describe().to_csv(F / "extremes_describe.csv")

    # --- regression -----------------------------------------------------------------------------
    sdc.ols(df.head(8), "bmi ~ cost + C(sex)").save(F / "regression_small_df.txt")
    sdc.ols(df.head(9), "bmi ~ cost").save(F / "regression_small_df_coefficients.csv")
    ols.table.to_csv(F / "regression_no_df.csv")
    (F / "regression_logit.txt").write_text(str(sdc.logit(df, "smoker ~ bmi").summary()))

    # --- microdata ------------------------------------------------------------------------------
    rng = np.random.default_rng(3)
    rows = df.head(40).assign(patient_id=[f"{h:016x}" for h in rng.integers(0, 2**62, 40)])
    rows[["patient_id", "age", "sex", "bmi"]].to_csv(F / "microdata_pseudonyms.csv", index=False)
    dates = df.head(30).assign(
        date_of_birth=pd.date_range("1950-01-01", periods=30, freq="37D").strftime("%Y-%m-%d")
    )
    dates[["date_of_birth", "sex", "bmi"]].to_csv(F / "microdata_birth_dates.csv", index=False)
    notes = df.head(12).assign(
        note=[
            f"Patient reported chest pain after visit number {i} and was sent home with advice"
            for i in range(12)
        ]
    )
    notes[["sex", "note"]].to_csv(F / "microdata_free_text.csv")
    df[["age", "bmi", "cost"]].to_csv(F / "microdata_many_rows.csv")
    pd.DataFrame({"region": ["North", "South"], "case": ["PX-000123", "PX-000456"], "n": [12, 15]}).to_csv(
        F / "microdata_known_identifier.csv", index=False
    )

    # --- differencing ---------------------------------------------------------------------------
    pd.crosstab(df.region, df.sex).to_csv(F / "diff_all_patients.csv")
    drop = df.index[(df.region == "East") & (df.sex == "F")][0]
    pd.crosstab(df.drop(index=drop).region, df.drop(index=drop).sex).to_csv(F / "diff_minus_one.csv")
    bands_a = pd.cut(df.age, [0, 18, 40, 65, 90], right=False, labels=["0-17", "18-39", "40-64", "65-89"])
    bands_b = pd.cut(df.age, [0, 20, 40, 65, 90], right=False, labels=["0-19", "20-39", "40-64", "65-89"])
    pd.crosstab(bands_a, df.sex).to_csv(F / "diff_bands_a.csv")
    few = df[~((df.age >= 18) & (df.age < 20))]
    few = pd.concat([few, df[(df.age >= 18) & (df.age < 20)].head(3)])
    pd.crosstab(
        pd.cut(few.age, [0, 18, 40, 65, 90], right=False, labels=["0-17", "18-39", "40-64", "65-89"]), few.sex
    ).to_csv(F / "diff_bands_few_a.csv")
    pd.crosstab(
        pd.cut(few.age, [0, 20, 40, 65, 90], right=False, labels=["0-19", "20-39", "40-64", "65-89"]), few.sex
    ).to_csv(F / "diff_bands_few_b.csv")
    pd.crosstab(bands_b, df.sex).to_csv(F / "diff_bands_b.csv")
    hidden = pd.crosstab(df.region, df.smoker).astype("Int64")
    hidden.loc["East", 1] = pd.NA
    hidden.to_csv(F / "diff_hidden_cell.csv")
    df.groupby("region").size().rename("n").to_csv(F / "diff_region_totals.csv")
    diag = df.assign(
        diagnosis=np.where(df.age < 3, "Rare syndrome", np.where(df.age < 40, "Asthma", "Diabetes"))
    )
    diag.loc[diag.age.between(40, 60), "diagnosis"] = "Hypertension"
    by_diag = pd.crosstab(diag.diagnosis, diag.sex).astype("Int64")
    by_diag.loc["Rare syndrome", "F"] = pd.NA
    by_diag.to_csv(F / "diff_categories_detailed.csv")
    merged = diag.diagnosis.replace({"Rare syndrome": "Other", "Hypertension": "Other"})
    pd.crosstab(merged, diag.sex).to_csv(F / "diff_categories_merged.csv")
    earlier = pd.crosstab(df.region, df.sex)
    earlier.loc["North", "M"] += 2
    earlier.to_csv(F / "diff_earlier_release.csv")

    # --- secondary suppression ------------------------------------------------------------------
    margins = pd.crosstab(df.age_band, df.sex, margins=True).astype("object")
    margins.loc[6, "F"] = ""  # hidden, but the row total still shows it
    margins.to_csv(F / "secondary_recomputable.csv")

    # --- formats that cannot pass ---------------------------------------------------------------
    (F / "plot.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (F / "report.pdf").write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    (F / "unknown.xyz").write_text("something")
    (F / "notebook_with_plot.ipynb").write_text(
        json.dumps(
            notebook(
                [
                    {
                        "output_type": "display_data",
                        "metadata": {},
                        "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"},
                    },
                ]
            )
        )
    )
    (F / "notebook_small_cell.ipynb").write_text(
        json.dumps(
            notebook(
                [
                    {
                        "output_type": "execute_result",
                        "execution_count": 1,
                        "metadata": {},
                        "data": {"text/html": small.to_html(), "text/plain": "..."},
                    },
                ]
            )
        )
    )

    # --- metadata tampering ---------------------------------------------------------------------
    lib = sdc.crosstab(df, "region", "sex", suppress=True)
    lib.save(F / "tampered_table.csv")
    lines = (F / "tampered_table.csv").read_text().splitlines()
    first = lines[1].split(",")
    lines[1] = ",".join([first[0], "30", *first[2:]])  # edited after saving: the hash no longer matches
    (F / "tampered_table.csv").write_text("\n".join(lines) + "\n")
    lib.save(F / "tampered_metadata.csv")
    meta_path = F / "tampered_metadata.csv.sdc.json"
    meta = json.loads(meta_path.read_text())
    meta["counts"][0][0] = 4  # claims fewer records than the table shows
    meta_path.write_text(json.dumps(meta))


def _markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join([frame.index.name or "", *map(str, frame.columns)]) + " |"
    rule = "|" + "---|" * (frame.shape[1] + 1)
    rows = [
        "| " + " | ".join([str(i), *map(str, r)]) + " |"
        for i, r in zip(frame.index, frame.to_numpy(), strict=True)
    ]
    return "\n".join([header, rule, *rows]) + "\n"


if __name__ == "__main__":
    main()

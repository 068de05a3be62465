"""Rebuild the SDC corpus: ``python tests/sdc_corpus/build.py`` (deterministic, seeded).

Each file is a realistic output a researcher might submit; ``expected.json`` (written by hand) holds
the verdict and the findings the engine must give. ``acro_bundle/`` is written by ACRO 1.0.2 itself
(``.venv-acro/bin/python tests/sdc_corpus/make_acro_bundle.py``) and kept as ACRO wrote it.
"""

from __future__ import annotations

import base64
import io
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
    (F / "plot.png").write_bytes(png())
    (F / "report.pdf").write_bytes(pdf())
    (F / "unknown.xyz").write_text("something")
    (F / "notebook_with_plot.ipynb").write_text(
        json.dumps(
            notebook(
                [
                    {
                        "output_type": "display_data",
                        "metadata": {},
                        "data": {"image/png": base64.b64encode(png()).decode(), "text/plain": "<Figure>"},
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

    adversarial(df)


def png(text: dict[str, str] | None = None) -> bytes:
    """A real 8x8 PNG (Pillow), optionally with text chunks."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (30, 90, 160)).save(out, "PNG", pnginfo=info)
    return out.getvalue()


def jpeg(comment: bytes = b"") -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (30, 90, 160)).save(out, "JPEG", comment=comment)
    return out.getvalue()


def pdf(extra_object: bytes = b"") -> bytes:
    """A one-page PDF with a valid cross-reference table; `extra_object` adds a dictionary to it."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    ] + ([extra_object] if extra_object else [])
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (i, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def extract(n: int, seed: int = 11) -> pd.DataFrame:
    """What a researcher must not get out: one row per person with a pseudonym and a birth date."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "pid": [f"{v:016x}" for v in rng.integers(0, 2**63, n)],
            "born": pd.to_datetime("1940-01-01") + pd.to_timedelta(rng.integers(0, 25_000, n), unit="D"),
            "hba1c": np.round(rng.normal(48, 9, n), 1),
        }
    ).assign(born=lambda f: f.born.dt.strftime("%Y-%m-%d"))


def nhs_numbers(n: int, seed: int = 5) -> list[int]:
    rng = np.random.default_rng(seed)
    out: list[int] = []
    while len(out) < n:
        digits = rng.integers(0, 10, 9)
        digits[0] = max(digits[0], 1)
        check = (11 - int((digits * np.arange(10, 1, -1)).sum()) % 11) % 11
        if check != 10:
            out.append(int("".join(map(str, digits)) + str(check)))
    return out


def adversarial(df: pd.DataFrame) -> None:
    """Outputs built to smuggle rows past the checks (issue 10): each must not pass."""
    rows = extract(40)
    records = rows.to_dict(orient="records")
    counts = df.groupby("region").size().reset_index(name="n")
    # a JSON shaped like an ACRO bundle, with rows beside an empty results
    (F / "adv_acro_rows_beside.json").write_text(
        json.dumps({"version": "1.0.2", "results": {}, "appendix": records})
    )
    # an ACRO bundle whose file list leaves the bundle
    escape = F / "adv_acro_escape"
    escape.mkdir(exist_ok=True)
    (escape / "results.json").write_text(
        json.dumps(
            {
                "version": "1.0.2",
                "results": {
                    "output_0": {
                        "uid": "output_0",
                        "status": "pass",
                        "type": "table",
                        "files": [{"name": "../microdata_pseudonyms.csv", "sdc": {}}],
                    }
                },
            }
        )
    )
    html_counts = counts.to_html()
    plain = rows.to_string()
    nb_meta = notebook([{"output_type": "stream", "name": "stdout", "text": ["Done.\n"]}])
    nb_meta["metadata"]["analysis"] = {"appendix": records}
    (F / "adv_notebook_metadata_rows.ipynb").write_text(json.dumps(nb_meta))
    nb_attach = notebook([{"output_type": "stream", "name": "stdout", "text": ["Done.\n"]}])
    nb_attach["cells"].append(
        {
            "cell_type": "markdown",
            "metadata": {},
            "source": "Results below.",
            "attachments": {"rows.txt": {"text/plain": plain}},
        }
    )
    (F / "adv_notebook_attachment_rows.ipynb").write_text(json.dumps(nb_attach))
    (F / "adv_notebook_plain_behind_html.ipynb").write_text(
        json.dumps(
            notebook(
                [
                    {
                        "output_type": "execute_result",
                        "execution_count": 1,
                        "metadata": {},
                        "data": {"text/html": "<p>Done.</p>", "text/plain": plain},
                    }
                ]
            )
        )
    )
    (F / "adv_notebook_counts_html_and_plain.ipynb").write_text(
        json.dumps(
            notebook(
                [
                    {
                        "output_type": "execute_result",
                        "execution_count": 1,
                        "metadata": {},
                        "data": {"text/html": html_counts, "text/plain": counts.to_string()},
                    }
                ]
            )
        )
    )  # a safe control: the plain text says what the HTML says
    table = pa_table_with_metadata(counts, {"notes": json.dumps(records)})
    import pyarrow.parquet as pq

    pq.write_table(table, F / "adv_parquet_metadata_rows.parquet")
    summary = (F / "safe_ols_summary.txt").read_text()
    (F / "adv_summary_then_rows.txt").write_text(summary + "\n" + plain + "\n")
    rng = np.random.default_rng(3)
    pd.DataFrame({"coef": rng.normal(48, 9, 1500).round(1), "p": rng.integers(18, 90, 1500)}).to_csv(
        F / "adv_microdata_coef_columns.csv", index=False
    )
    wide = rows.head(30).set_index("pid").T
    wide.index.name = "field"
    wide.to_csv(F / "adv_microdata_transposed.csv")
    pd.DataFrame({"ref": nhs_numbers(30), "visits": rng.integers(10, 40, 30)}).to_csv(
        F / "adv_microdata_nhs_numbers.csv", index=False
    )
    # sidecars that try to make the checks laxer
    sdc.crosstab(df, "age_band", "smoker", margins=True, suppress=True).save(F / "adv_sidecar_rounding.csv")
    meta_path = F / "adv_sidecar_rounding.csv.sdc.json"
    meta = json.loads(meta_path.read_text())
    meta["rounding"] = 10  # the values are not multiples of 10
    meta_path.write_text(json.dumps(meta))
    dated = pd.DataFrame(
        {"visit": np.repeat(rows.born.head(12).to_numpy(), 12), "hba1c": np.round(rng.normal(48, 9, 144), 1)}
    )
    sdc.pivot_table(dated, "hba1c", "visit", None, aggfunc="mean").save(F / "adv_sidecar_counts_dates.csv")
    # pictures that carry more than their picture
    (F / "adv_png_trailing.png").write_bytes(png() + rows.to_csv(index=False).encode())
    (F / "adv_png_text_chunk.png").write_bytes(png({"Comment": rows.to_csv(index=False)}))
    (F / "adv_jpeg_trailing.jpg").write_bytes(jpeg() + rows.to_csv(index=False).encode())
    (F / "adv_jpeg_comment.jpg").write_bytes(jpeg(rows.to_csv(index=False).encode()))
    (F / "adv_pdf_embedded_file.pdf").write_bytes(pdf(b"<< /Type /EmbeddedFile /Length 0 >>"))
    (F / "adv_pdf_trailing.pdf").write_bytes(pdf() + rows.to_csv(index=False).encode())
    (F / "safe_plot_matplotlib_like.png").write_bytes(png({"Software": "Matplotlib version3.9.2"}))


def pa_table_with_metadata(frame: pd.DataFrame, extra: dict[str, str]):
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    return table.replace_schema_metadata(
        {**(table.schema.metadata or {}), **{k.encode(): v.encode() for k, v in extra.items()}}
    )


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

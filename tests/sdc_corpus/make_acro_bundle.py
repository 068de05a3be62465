"""Write ``acro_bundle/`` with ACRO itself: run with ``.venv-acro/bin/python`` (ACRO 1.0.2).

Three outputs ACRO lets through without a fail, all made with suppression on:
output_0, a crosstab with margins on a numeric row index that leaves a cell of 3 visible;
output_1, the mode of a cell with one record; output_2 and output_3, two crosstabs of populations
that differ by one record. ``tre egress check tests/sdc_corpus/acro_bundle`` fails all three.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from acro import ACRO

OUT = Path(__file__).parent / "acro_bundle"


def main() -> None:
    rng = np.random.default_rng(1)
    n = 400
    df = pd.DataFrame(
        {
            "age_band": rng.integers(1, 5, n),
            "sex": rng.choice(["F", "M"], n),
            "region": rng.choice(["N", "S", "E"], n),
            "bmi": np.round(rng.normal(27, 4, n), 1),
        }
    )
    small = df.index[(df.age_band == 4) & (df.sex == "F")]
    df = df.drop(small[3:])  # three records left in (4, F)
    acro = ACRO(suppress=True)
    acro.crosstab(df.age_band, df.sex, margins=True)
    one = pd.concat([df, pd.DataFrame({"age_band": [2], "sex": ["F"], "region": ["W"], "bmi": [41.3]})])
    acro.pivot_table(one, index="region", values="bmi", aggfunc="mode")
    acro.crosstab(df.region, df.sex)
    minus_one = df.drop(df.index[(df.region == "E") & (df.sex == "F")][0])
    acro.crosstab(minus_one.region, minus_one.sex)
    if OUT.exists():
        shutil.rmtree(OUT)
    acro.finalise(str(OUT), "json")


if __name__ == "__main__":
    sys.exit(main())

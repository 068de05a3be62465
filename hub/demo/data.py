"""Deterministic synthetic health data for demos, tests and benchmarks.

`generate(out_dir, patients=N, seed=S)` writes one Parquet file per table (optionally a CSV copy
beside it), one folder per dataset. The output layout is an interface (the registry's demo
registers these files as datasets; provisioning reads them):

```
<out_dir>/
  demo_data.json                    seed, patients, and per dataset/table: path, rows, columns,
                                    identifier column (the national identifier, `nhs_number`)
  diabetes/patients.parquet         nhs_number, birth_date, sex, postcode_district,
                                    diabetes_type, diagnosis_date            (one row per patient)
  diabetes/hba1c.parquet            nhs_number, test_date, hba1c_mmol_mol
  diabetes/prescriptions.parquet    nhs_number, prescribed_date, atc_code, drug_name
  diabetes/complications.parquet    nhs_number, complication, diagnosis_date
  oncology/patients.parquet         nhs_number, birth_date, sex            (one row per person)
  oncology/tumours.parquet          tumour_id, nhs_number, diagnosis_date, topography_code,
                                    topography_site, morphology_code, stage
  oncology/treatments.parquet       tumour_id, nhs_number, treatment, start_date
  optout/optout.parquet             nhs_number, recorded_date               (national opt-out)
```

`nhs_number` is a 10-character string of digits with a valid modulus-11 check digit, unique per
person. Each dataset's first table has one row per person (register it as the person table). The
oncology registry covers some cohort patients plus people outside the cohort; the opt-out list
draws from both. Counts are skewed (negative binomial), categories have rare levels (Zipf-
distributed postcode districts, rare diabetes types, drugs and tumour sites) so that small cells
appear in ordinary cross-tabulations. About 10 event rows per patient: 1,000,000 patients give
roughly 10,000,000 rows. Generation is vectorised with numpy, so the same seed and size always
give byte-identical data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

IDENTIFIER_COLUMN = "nhs_number"
CHUNK_PATIENTS = 500_000
# Data are "as of" this day: no event after it, ages are computed at it.
AS_OF = np.datetime64("2025-12-31", "D")

DIABETES_TYPES = {
    "type_2": 0.893,
    "type_1": 0.080,
    "secondary": 0.012,
    "lada": 0.008,
    "mody": 0.004,
    "other": 0.003,
}
SEXES = {"F": 0.4395, "M": 0.56, "I": 0.0005}

# ATC code -> (drug name, weight for type 1, weight for every other type).
DRUGS = {
    "A10BA02": ("metformin", 0.05, 0.44),
    "A10BB09": ("gliclazide", 0.0, 0.15),
    "A10BH01": ("sitagliptin", 0.0, 0.08),
    "A10BH04": ("alogliptin", 0.0, 0.015),
    "A10BK01": ("dapagliflozin", 0.01, 0.07),
    "A10BK03": ("empagliflozin", 0.0, 0.07),
    "A10BJ06": ("semaglutide", 0.0, 0.05),
    "A10BJ02": ("liraglutide", 0.0, 0.03),
    "A10BX16": ("tirzepatide", 0.0, 0.01),
    "A10BG03": ("pioglitazone", 0.0, 0.02),
    "A10BX02": ("repaglinide", 0.0, 0.003),
    "A10BF01": ("acarbose", 0.0, 0.002),
    "A10AE04": ("insulin glargine", 0.40, 0.04),
    "A10AE05": ("insulin detemir", 0.10, 0.005),
    "A10AB05": ("insulin aspart", 0.34, 0.01),
    "A10AB01": ("insulin human", 0.10, 0.005),
}
# Complication -> yearly-ish risk scale (multiplied by years since diagnosis, capped).
COMPLICATIONS = {"retinopathy": 0.012, "neuropathy": 0.010, "nephropathy": 0.008, "foot_ulcer": 0.0015}

# ICD-O-3 topography -> (site, weight, typical morphology).
TOPOGRAPHY = {
    "C50.9": ("breast", 0.15, "8500/3"),
    "C61.9": ("prostate", 0.14, "8140/3"),
    "C34.9": ("lung", 0.13, "8046/3"),
    "C18.9": ("colon", 0.09, "8140/3"),
    "C20.9": ("rectum", 0.04, "8140/3"),
    "C25.9": ("pancreas", 0.05, "8500/3"),
    "C22.0": ("liver", 0.04, "8170/3"),
    "C64.9": ("kidney", 0.04, "8312/3"),
    "C67.9": ("bladder", 0.04, "8120/3"),
    "C54.1": ("endometrium", 0.05, "8380/3"),
    "C16.9": ("stomach", 0.025, "8140/3"),
    "C44.9": ("skin", 0.06, "8720/3"),
    "C15.9": ("oesophagus", 0.025, "8070/3"),
    "C56.9": ("ovary", 0.02, "8441/3"),
    "C73.9": ("thyroid", 0.012, "8260/3"),
    "C71.9": ("brain", 0.01, "9440/3"),
    "C62.9": ("testis", 0.002, "9061/3"),
    "C40.9": ("bone", 0.001, "9180/3"),
    "C69.2": ("retina", 0.0005, "9510/3"),
}
STAGES = {"I": 0.27, "II": 0.24, "III": 0.18, "IV": 0.19, "0": 0.02, "unknown": 0.10}
TREATMENTS = {
    "surgery": 0.38,
    "chemotherapy": 0.22,
    "radiotherapy": 0.2,
    "hormone_therapy": 0.1,
    "immunotherapy": 0.06,
    "palliative_care": 0.035,
    "stem_cell_transplant": 0.005,
}
# Split at import time: a list literal of 110 codes would be 110 lines after formatting.
POSTCODE_AREAS = (  # noqa: SIM905
    "AB AL B BA BB BD BH BL BN BR BS CA CB CF CH CM CO CR CT CV CW DA DD DE DH DL DN DT DY E EC EH "
    "EN EX FK FY G GL GU HA HD HG HP HR HU HX IG IP KT KY L LA LD LE LL LN LS LU M ME MK N NE NG NN "
    "NP NR NW OL OX PE PL PO PR RG RH RM S SA SE SG SK SL SM SN SO SP SR SS ST SW SY TA TD TF TN TQ "
    "TR TS TW UB W WA WC WD WF WN WR WS WV YO ZE"
).split()

# dataset -> table -> column names (order as written).
TABLES: dict[str, dict[str, tuple[str, ...]]] = {
    "diabetes": {
        "patients": (
            "nhs_number",
            "birth_date",
            "sex",
            "postcode_district",
            "diabetes_type",
            "diagnosis_date",
        ),
        "hba1c": ("nhs_number", "test_date", "hba1c_mmol_mol"),
        "prescriptions": ("nhs_number", "prescribed_date", "atc_code", "drug_name"),
        "complications": ("nhs_number", "complication", "diagnosis_date"),
    },
    "oncology": {
        "patients": ("nhs_number", "birth_date", "sex"),
        "tumours": (
            "tumour_id",
            "nhs_number",
            "diagnosis_date",
            "topography_code",
            "topography_site",
            "morphology_code",
            "stage",
        ),
        "treatments": ("tumour_id", "nhs_number", "treatment", "start_date"),
    },
    "optout": {"optout": ("nhs_number", "recorded_date")},
}


@dataclass(frozen=True)
class GeneratedData:
    out_dir: Path
    patients: int
    seed: int
    rows: dict[str, dict[str, int]]  # dataset -> table -> rows

    @property
    def total_rows(self) -> int:
        return sum(n for tables in self.rows.values() for n in tables.values())

    def path(self, dataset: str, table: str) -> Path:
        return self.out_dir / dataset / f"{table}.parquet"


def nhs_check_digit(base: np.ndarray) -> np.ndarray:
    """Modulus-11 check digit of 9-digit numbers (10 means the number is not issuable)."""
    total = np.zeros(base.shape, dtype=np.int64)
    for position in range(9):  # weights 10..2 from the leftmost digit
        digit = (base // 10 ** (8 - position)) % 10
        total += digit * (10 - position)
    check = 11 - total % 11
    return np.where(check == 11, 0, check)


def is_valid_nhs_number(value: str) -> bool:
    if len(value) != 10 or not value.isdigit():
        return False
    check = nhs_check_digit(np.array([int(value[:9])], dtype=np.int64))[0]
    return check != 10 and check == int(value[9])


def _nhs_numbers(rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` distinct valid 10-digit identifiers (as int64), in random order."""
    found = np.empty(0, dtype=np.int64)
    while found.size < n:
        base = rng.integers(100_000_000, 1_000_000_000, size=int((n - found.size) * 1.15) + 64)
        check = nhs_check_digit(base)
        fresh = (base * 10 + check)[check != 10]
        merged = np.concatenate([found, fresh])
        _, first = np.unique(merged, return_index=True)
        found = merged[np.sort(first)]  # keep draw order, drop repeats
    return found[:n]


def _categorical(rng: np.random.Generator, weights: dict[str, float], n: int) -> pa.DictionaryArray:
    labels = list(weights)
    p = np.array([weights[k] for k in labels], dtype=float)
    codes = rng.choice(len(labels), size=n, p=p / p.sum()).astype(np.int32)
    return pa.DictionaryArray.from_arrays(codes, pa.array(labels))


def _dict(codes: np.ndarray, labels: list[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(codes.astype(np.int32), pa.array(labels))


def _skewed_counts(
    rng: np.random.Generator, mean: np.ndarray | float, n: int, shape: float = 1.5
) -> np.ndarray:
    """Negative-binomial counts: most people have a few events, some have many."""
    mean = np.broadcast_to(np.asarray(mean, dtype=float), (n,))
    return rng.negative_binomial(shape, shape / (shape + mean)).astype(np.int64)


def _dates_between(rng: np.random.Generator, start: np.ndarray, end: np.datetime64) -> np.ndarray:
    span = (end - start).astype(np.int64) + 1
    return start + (rng.random(start.size) * span).astype(np.int64)


def _postcode_districts(rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    names = [f"{area}{i}" for area in POSTCODE_AREAS for i in range(1, int(rng.integers(4, 30)))]
    rank = rng.permutation(len(names)) + 1
    weights = 1.0 / rank**1.1  # Zipf: a few big districts, a long tail of tiny ones
    return names, weights / weights.sum()


def _people(
    rng: np.random.Generator, ids: np.ndarray, districts: tuple[list[str], np.ndarray]
) -> dict[str, object]:
    """Diabetes cohort: one row per patient."""
    n = ids.size
    dtype = _categorical(rng, DIABETES_TYPES, n)
    codes = dtype.indices.to_numpy()
    type_1 = codes == list(DIABETES_TYPES).index("type_1")
    age = np.where(
        type_1,
        np.clip(rng.normal(38, 18, n), 2, 90),
        np.clip(rng.normal(65, 13, n), 18, 102),
    )
    birth = AS_OF - (age * 365.25).astype(np.int64)
    onset_age = np.where(
        type_1,
        np.clip(rng.normal(14, 9, n), 1, age),
        np.clip(age - rng.exponential(8, n), 16, age),
    )
    diagnosis = birth + (onset_age * 365.25).astype(np.int64)
    diagnosis = np.minimum(diagnosis, AS_OF)
    names, district_p = districts
    return {
        "nhs_number": ids,
        "birth_date": birth,
        "sex": _categorical(rng, SEXES, n),
        "postcode_district": _dict(rng.choice(len(names), size=n, p=district_p), names),
        "diabetes_type": dtype,
        "diagnosis_date": diagnosis,
        "_type_1": type_1,
        "_years": (AS_OF - diagnosis).astype(np.int64) / 365.25,
    }


def _hba1c(rng: np.random.Generator, people: dict) -> dict[str, object]:
    years = people["_years"]
    n = years.size
    counts = _skewed_counts(rng, 1.5 + np.minimum(years, 15) * 0.55, n)
    owner = np.repeat(np.arange(n), counts)
    baseline = np.where(people["_type_1"], rng.normal(68, 14, n), rng.normal(55, 12, n))
    value = baseline[owner] + rng.normal(0, 7, owner.size)
    return {
        "nhs_number": people["nhs_number"][owner],
        "test_date": _dates_between(rng, people["diagnosis_date"][owner], AS_OF),
        "hba1c_mmol_mol": np.clip(np.rint(value), 20, 195).astype(np.int16),
    }


def _prescriptions(rng: np.random.Generator, people: dict) -> dict[str, object]:
    years = people["_years"]
    n = years.size
    counts = _skewed_counts(rng, 1.3 + np.minimum(years, 12) * 0.5, n, shape=0.9)
    owner = np.repeat(np.arange(n), counts)
    atc = list(DRUGS)
    drug = np.empty(owner.size, dtype=np.int32)
    owner_type_1 = people["_type_1"][owner]
    for is_type_1, column in ((True, 1), (False, 2)):
        mask = owner_type_1 == is_type_1
        p = np.array([DRUGS[code][column] for code in atc])
        drug[mask] = rng.choice(len(atc), size=int(mask.sum()), p=p / p.sum())
    return {
        "nhs_number": people["nhs_number"][owner],
        "prescribed_date": _dates_between(rng, people["diagnosis_date"][owner], AS_OF),
        "atc_code": _dict(drug, atc),
        "drug_name": _dict(drug, [DRUGS[code][0] for code in atc]),
    }


def _complications(rng: np.random.Generator, people: dict) -> dict[str, object]:
    years = np.minimum(people["_years"], 25)
    owners, kinds = [], []
    for k, rate in enumerate(COMPLICATIONS.values()):
        has = rng.random(years.size) < rate * years
        owners.append(np.flatnonzero(has))
        kinds.append(np.full(int(has.sum()), k, dtype=np.int32))
    owner = np.concatenate(owners)
    return {
        "nhs_number": people["nhs_number"][owner],
        "complication": _dict(np.concatenate(kinds), list(COMPLICATIONS)),
        "diagnosis_date": _dates_between(rng, people["diagnosis_date"][owner], AS_OF),
    }


def _oncology(
    rng: np.random.Generator, people: dict, extra_ids: np.ndarray
) -> tuple[dict[str, object], dict[str, object], dict[str, object]]:
    """Tumours for ~6% of the cohort plus people outside it; treatments per tumour."""
    n = people["nhs_number"].size
    in_cohort = np.flatnonzero(rng.random(n) < 0.06)
    m = extra_ids.size
    ids = np.concatenate([people["nhs_number"][in_cohort], extra_ids])
    birth = np.concatenate(
        [
            people["birth_date"][in_cohort],
            AS_OF - (np.clip(rng.normal(66, 14, m), 20, 100) * 365.25).astype(int),
        ]
    )
    sex_cohort = people["sex"].indices.to_numpy()[in_cohort]
    sex_extra = _categorical(rng, SEXES, m).indices.to_numpy()
    sex = np.concatenate([sex_cohort, sex_extra])
    tumours_per_person = 1 + (rng.random(ids.size) < 0.08) + (rng.random(ids.size) < 0.01)
    person = np.repeat(np.arange(ids.size), tumours_per_person)
    t = person.size
    sites = list(TOPOGRAPHY)
    p = np.array([TOPOGRAPHY[s][1] for s in sites])
    site = rng.choice(len(sites), size=t, p=p / p.sum())
    earliest = np.maximum(birth[person] + 18 * 365, np.datetime64("2000-01-01", "D"))
    earliest = np.minimum(earliest, AS_OF)
    diagnosis = _dates_between(rng, earliest, AS_OF)
    tumours = {
        "_tumour": np.arange(t),
        "nhs_number": ids[person],
        "diagnosis_date": diagnosis,
        "topography_code": _dict(site, sites),
        "topography_site": _dict(site, [TOPOGRAPHY[s][0] for s in sites]),
        "morphology_code": pa.array([TOPOGRAPHY[sites[i]][2] for i in range(len(sites))]).take(site),
        "stage": _categorical(rng, STAGES, t),
    }
    per_tumour = _skewed_counts(rng, 1.6, t, shape=3.0)
    which = np.repeat(np.arange(t), per_tumour)
    start = diagnosis[which] + rng.integers(0, 180, which.size)
    treatments = {
        "_tumour": which,
        "nhs_number": ids[person][which],
        "treatment": _categorical(rng, TREATMENTS, which.size),
        "start_date": np.minimum(start, AS_OF),
    }
    people = {"nhs_number": ids, "birth_date": birth, "sex": _dict(sex, list(SEXES))}
    return people, tumours, treatments


def _tumour_ids(numbers: np.ndarray) -> pa.Array:
    """ "T" + 8 digits: never a 10-digit run, so it cannot be mistaken for a national identifier."""
    return pa.array(np.char.add("T", np.char.zfill((numbers + 1).astype(str), 8)))


def _to_table(columns: dict[str, object], names: tuple[str, ...]) -> pa.Table:
    arrays = []
    for name in names:
        value = columns[name]
        if name == IDENTIFIER_COLUMN:
            value = pa.array(value).cast(pa.string())
        arrays.append(value if isinstance(value, pa.Array) else pa.array(value))
    return pa.table(arrays, names=list(names))


def _chunk(
    rng: np.random.Generator, ids: np.ndarray, extra_ids: np.ndarray, districts: tuple[list[str], np.ndarray]
) -> dict[str, dict[str, dict[str, object]]]:
    people = _people(rng, ids, districts)
    oncology_people, tumours, treatments = _oncology(rng, people, extra_ids)
    return {
        "diabetes": {
            "patients": people,
            "hba1c": _hba1c(rng, people),
            "prescriptions": _prescriptions(rng, people),
            "complications": _complications(rng, people),
        },
        "oncology": {"patients": oncology_people, "tumours": tumours, "treatments": treatments},
    }


def generate(out_dir: Path, patients: int = 10_000, seed: int = 0, csv: bool = False) -> GeneratedData:
    """Write the demo datasets for `patients` diabetes patients under `out_dir` (see module doc).

    Patients are generated in chunks (each with its own seeded stream) and appended to the files,
    so memory stays bounded at 10,000,000 patients.
    """
    if patients < 1:
        raise ValueError("patients must be at least 1")
    rng = np.random.default_rng(seed)
    extra = max(1, patients // 50)  # oncology patients outside the diabetes cohort
    ids = _nhs_numbers(rng, patients + extra)
    districts = _postcode_districts(rng)
    opted_out = np.sort(rng.choice(ids.size, size=max(1, ids.size * 25 // 1000), replace=False))
    optout = {
        "nhs_number": ids[opted_out],
        "recorded_date": _dates_between(
            rng, np.full(opted_out.size, np.datetime64("2018-05-25", "D")), AS_OF
        ),
    }
    out_dir = Path(out_dir)
    writers: dict[tuple[str, str], list] = {}
    rows: dict[str, dict[str, int]] = {ds: dict.fromkeys(tables, 0) for ds, tables in TABLES.items()}

    def write(dataset: str, table: str, columns: dict[str, object]) -> None:
        data = _to_table(columns, TABLES[dataset][table])
        if (dataset, table) not in writers:
            path = out_dir / dataset / f"{table}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            sinks = [pq.ParquetWriter(path, data.schema, compression="zstd")]
            if csv:
                sinks.append(pacsv.CSVWriter(path.with_suffix(".csv"), data.schema))
            writers[dataset, table] = sinks
        for sink in writers[dataset, table]:
            sink.write_table(data)
        rows[dataset][table] += data.num_rows

    try:
        write("optout", "optout", optout)
        tumour_offset = 0
        for number, start in enumerate(range(0, patients, CHUNK_PATIENTS)):
            stop = min(start + CHUNK_PATIENTS, patients)
            share = slice(start * extra // patients, stop * extra // patients)
            chunk_rng = np.random.default_rng([seed, number])
            chunk = _chunk(chunk_rng, ids[start:stop], ids[patients:][share], districts)
            for key in ("tumours", "treatments"):  # tumour ids are numbered across chunks
                chunk["oncology"][key]["tumour_id"] = _tumour_ids(
                    chunk["oncology"][key]["_tumour"] + tumour_offset
                )
            tumour_offset += len(chunk["oncology"]["tumours"]["_tumour"])
            for dataset, tables in chunk.items():
                for table, columns in tables.items():
                    write(dataset, table, columns)
    finally:
        for sinks in writers.values():
            for sink in sinks:
                sink.close()
    described = {
        dataset: {
            table: {
                "path": f"{dataset}/{table}.parquet",
                "rows": rows[dataset][table],
                "columns": list(names),
                "identifier_column": IDENTIFIER_COLUMN,
            }
            for table, names in tables.items()
        }
        for dataset, tables in TABLES.items()
    }
    meta = {"generator": "hub.demo_data", "seed": seed, "patients": patients, "datasets": described}
    (out_dir / "demo_data.json").write_text(json.dumps(meta, indent=2) + "\n")
    return GeneratedData(out_dir=out_dir, patients=patients, seed=seed, rows=rows)

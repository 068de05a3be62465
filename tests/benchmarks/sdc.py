"""Benchmark: tre_notebook.sdc + the egress SDC engine side by side with ACRO on the same data.

    python tests/benchmarks/sdc.py [--rows 1000000] [--runs 3] [--csv-mb 50]

Synthetic microdata (seeded) is written once and loaded by both tools outside the timings. Timed,
per tool, with suppression on: a crosstab of counts (8x6 cells), a table of means (8x6 cells), and a
table of means with 100,000 cells (1000x100), all over ``--rows`` rows. ACRO runs in its own venv
(.venv-acro, created with ``pip install acro`` when missing) through a subprocess, so its pinned
dependencies never touch the main venv. Then the engine checks a ~50 MB CSV output (cold first run,
then the median of warm runs). Targets: ours >= 5x faster than ACRO on each table; the 50 MB check
<= 2 s. Timings are wall-clock medians over --runs on a shared machine: noisy, CPU time is shown too.
Human-readable lines first; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "images" / "tre_notebook"))

from tre_notebook import sdc  # noqa: E402

from egress.sdc import check_paths  # noqa: E402

ACRO_VENV = ROOT / ".venv-acro"
ACRO_VERSION = "1.0.2"
TARGET_RATIO = 5.0
TARGET_CSV_SECONDS = 2.0

# Runs inside .venv-acro: load the same arrays, time ACRO's own calls, print JSON.
ACRO_SCRIPT = r"""
import json, logging, statistics, sys, time
import numpy as np, pandas as pd
logging.disable(logging.CRITICAL)
from acro import ACRO
data = np.load(sys.argv[1])
runs = int(sys.argv[2])
df = pd.DataFrame({k: data[k] for k in data.files})
acro = ACRO(suppress=True)
tasks = {
    "crosstab_counts": lambda: acro.crosstab(df.a, df.b),
    "crosstab_means": lambda: acro.crosstab(df.a, df.b, values=df.x, aggfunc="mean"),
    "means_100k_cells": lambda: acro.pivot_table(df, values="x", index="g1", columns="g2", aggfunc="mean"),
}
for name, task in tasks.items():
    wall, cpu = [], []
    for _ in range(runs if name != "means_100k_cells" else 1):
        w, c = time.perf_counter(), time.process_time()
        task()
        wall.append(time.perf_counter() - w); cpu.append(time.process_time() - c)
    t = {"wall_s": statistics.median(wall), "cpu_s": statistics.median(cpu)}
    print(json.dumps({name: t}), flush=True)
"""


def ensure_acro_venv() -> Path:
    python = ACRO_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {ACRO_VENV} with acro=={ACRO_VERSION} (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(ACRO_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"acro=={ACRO_VERSION}"], check=True)
    return python


ACRO_TASKS = ("crosstab_counts", "crosstab_means", "means_100k_cells")


def run_acro(python: Path, work: Path, runs: int, timeout: int) -> dict[str, dict[str, float]]:
    """ACRO's timings, task by task as they finish; a task still running at ``timeout`` is dropped."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    cmd = [str(python), "-c", ACRO_SCRIPT, str(work / "micro.npz"), str(runs)]
    out: dict[str, dict[str, float]] = {}
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=work, env=env) as proc:
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            for line in proc.stdout or []:
                if line.startswith("{"):
                    done = json.loads(line)
                    out.update(done)
                    for name, t in done.items():
                        print(
                            f"acro  {name:24s} {t['wall_s']:8.3f} s wall  {t['cpu_s']:8.3f} s cpu", flush=True
                        )
        finally:
            timer.cancel()
    return out


def microdata(rows: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2024)
    return {
        "a": rng.integers(0, 8, rows),  # 8 x 6 cells
        "b": rng.choice(np.array(list("ABCDEF")), rows),
        "x": np.round(rng.gamma(2.0, 20.0, rows), 3),
        "g1": rng.integers(0, 1000, rows),  # 1000 x 100 = 100,000 cells
        "g2": rng.integers(0, 100, rows),
    }


def timed(task, runs: int) -> dict[str, float]:
    wall, cpu = [], []
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        task()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return {"wall_s": statistics.median(wall), "cpu_s": statistics.median(cpu)}


def ours(df: pd.DataFrame, runs: int, out: Path) -> dict[str, dict[str, float]]:
    tasks = {
        "crosstab_counts": lambda: sdc.crosstab(df, "a", "b", suppress=True),
        "crosstab_means": lambda: sdc.crosstab(df, "a", "b", values="x", aggfunc="mean", suppress=True),
        "means_100k_cells": lambda: sdc.pivot_table(df, "x", "g1", "g2", aggfunc="mean", suppress=True),
    }
    result = {name: timed(task, runs) for name, task in tasks.items()}
    big = tasks["means_100k_cells"]()
    assert big.table.size == 100_000, big.table.shape
    big.save(out / "means_100k.csv")
    result["check_100k_cell_output"] = timed(lambda: check_paths([out / "means_100k.csv"]), runs)
    return result


def write_big_csv(path: Path, megabytes: int) -> float:
    """A group-by output with a count column, like a researcher's large aggregate export."""
    rows = int(megabytes * 1e6 / 34)
    rng = np.random.default_rng(7)
    pd.DataFrame(
        {
            "practice": np.char.add("P", rng.integers(10000, 99999, rows).astype(str)),
            "year": rng.integers(2010, 2024, rows),
            "sex": rng.choice(["F", "M"], rows),
            "n": rng.integers(5, 500, rows),
            "cost_mean": np.round(rng.normal(300, 50, rows), 4),
        }
    ).to_csv(path)
    return path.stat().st_size / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--csv-mb", type=int, default=50)
    parser.add_argument("--acro-timeout", type=int, default=3000, help="seconds before ACRO is stopped")
    args = parser.parse_args()

    acro_python = ensure_acro_venv()
    with tempfile.TemporaryDirectory(prefix="sdc-bench-") as tmp:
        work = Path(tmp)
        arrays = microdata(args.rows)
        np.savez(work / "micro.npz", **arrays)
        df = pd.DataFrame(arrays)
        print(
            f"microdata: {args.rows:,} rows; runs per task: {args.runs} (ACRO's 100k-cell table: 1 run)",
            flush=True,
        )

        mine = ours(df, args.runs, work)
        for name, t in mine.items():
            print(f"ours  {name:24s} {t['wall_s']:8.3f} s wall  {t['cpu_s']:8.3f} s cpu", flush=True)

        theirs = run_acro(acro_python, work, args.runs, args.acro_timeout)
        ratios: dict[str, float] = {}
        for name in ACRO_TASKS:
            t = theirs.get(name)
            if t is None:  # ACRO did not finish in time: ours is faster by at least this much
                theirs[name] = {"wall_s": None, "timed_out_after_s": args.acro_timeout}
                ratios[name] = args.acro_timeout / mine[name]["wall_s"]
                print(f"acro  {name:24s} not done after {args.acro_timeout} s (stopped)", flush=True)
            else:
                ratios[name] = t["wall_s"] / mine[name]["wall_s"]
        for name, r in ratios.items():
            verdict = "meets" if r >= TARGET_RATIO else "MISSES"
            bound = ">= " if theirs[name]["wall_s"] is None else ""
            print(
                f"ratio {name:24s} {bound}{r:.1f}x  ({verdict} the >= {TARGET_RATIO:g}x target)", flush=True
            )

        size = write_big_csv(work / "big.csv", args.csv_mb)
        cold = timed(lambda: check_paths([work / "big.csv"]), 1)
        warm = timed(lambda: check_paths([work / "big.csv"]), args.runs)
        ok = warm["wall_s"] <= TARGET_CSV_SECONDS
        print(
            f"engine check of a {size:.1f} MB CSV: first run {cold['wall_s']:.2f} s, "
            f"median {warm['wall_s']:.2f} s wall ({warm['cpu_s']:.2f} s cpu)  "
            f"({'meets' if ok else 'MISSES'} the <= {TARGET_CSV_SECONDS:g} s target)",
            flush=True,
        )

    print(
        json.dumps(
            {
                "benchmark": "sdc",
                "rows": args.rows,
                "runs": args.runs,
                "acro_version": ACRO_VERSION,
                "ours": mine,
                "acro": theirs,
                "ratio_acro_over_ours": ratios,
                "target_ratio": TARGET_RATIO,
                "csv_check": {
                    "megabytes": round(size, 1),
                    "first_s": cold["wall_s"],
                    "median_s": warm["wall_s"],
                    "cpu_s": warm["cpu_s"],
                    "target_s": TARGET_CSV_SECONDS,
                },
                "meets_targets": all(r >= TARGET_RATIO for r in ratios.values()) and ok,
                "load_average": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()

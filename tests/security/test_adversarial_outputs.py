"""Outputs built to hurt the egress service itself: a Parquet bomb and a huge notebook are refused
quickly with a finding that says why, and the service keeps answering while and after it checks them.

The corpus (tests/sdc_corpus, `adv_*` cases) holds the outputs built to smuggle rows past the checks.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from egress.sdc import check_paths
from tests.fixtures_egress import AUTHOR

P = "/services/egress"


def parquet_bomb(path, row_groups: int = 5) -> None:
    """Under 1 MB on disk, 1.25 GiB decoded: zeros compress to almost nothing."""
    chunk = pa.table({"n": pa.array(np.zeros(1 << 25, dtype=np.int64))})
    with pq.ParquetWriter(path, chunk.schema, compression="zstd") as writer:
        for _ in range(row_groups):
            writer.write_table(chunk, row_group_size=1 << 25)


def test_a_parquet_bomb_is_refused_before_it_is_expanded(tmp_path):
    bomb = tmp_path / "counts.parquet"
    parquet_bomb(bomb)
    assert bomb.stat().st_size < 2 << 20
    started = time.monotonic()
    [entry] = check_paths([bomb])["files"]
    assert time.monotonic() - started < 5
    assert entry["verdict"] == "fail"
    assert "decodes to more than 1,024 MiB" in entry["findings"][0]["message"]


def test_a_huge_notebook_is_refused_without_being_parsed(tmp_path):
    path = tmp_path / "analysis.ipynb"
    cell = {"cell_type": "code", "source": "x", "metadata": {}, "outputs": [
        {"output_type": "stream", "name": "stdout", "text": "0" * (1 << 20)}
    ]}  # fmt: skip
    path.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [cell] * 40}))
    started = time.monotonic()
    [entry] = check_paths([path])["files"]
    assert time.monotonic() - started < 2
    assert entry["verdict"] == "fail" and "is read whole for checking" in entry["findings"][0]["message"]


def test_the_service_answers_while_and_after_checking_a_bomb(web):
    eg, _, client = web
    parquet_bomb(eg.home() / "bomb.parquet")
    rid, [fid] = eg.draft(files=(("bomb.parquet", "output"),))
    c = client(AUTHOR)
    c.headers["X-Test-Via"] = "token"
    checked = c.post(P + f"/api/requests/{rid}/precheck")
    assert checked.status_code == 200
    assert checked.json()[str(fid)]["verdict"] == "fail"
    assert c.get(P + "/api/me").status_code == 200

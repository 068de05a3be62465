"""Egress API under load: 1,000 requests in the database, 50 concurrent clients listing and opening
requests over real HTTP against uvicorn on 127.0.0.1. Prints throughput and p50/p99 latency, then one
JSON object on the last line. Targets on the 2-core reference machine: >= 300 requests/s, p99 < 100 ms.

    .venv/bin/python tests/benchmarks/egress_api.py [--seconds 10] [--clients 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.http_load import client, summarise

REQUESTS_IN_DB = 1000
HEADERS = "X-Test-User: cat\r\nX-Test-Via: token\r\n"  # who the test server takes the caller to be
TARGET_RPS, TARGET_P99_MS = 300, 100


def seed(root: Path) -> None:
    import os

    os.environ["TRE_ROOT"] = str(root)
    from egress.review.models import EgressFile, EgressGroup, EgressRequest, EgressReview
    from egress.review.storage import BlobStore
    from hub.kernel.clock import utcnow
    from hub.kernel.db import session_scope
    from hub.kernel.settings import get_settings
    from tests.fixtures_egress import AUTHOR, CHECKER1, CHECKER2, CSV, PROJECT, build_world

    settings = get_settings()
    build_world(settings)
    sha = BlobStore(settings.egress_dir).put_bytes(CSV)
    checks = {
        "verdict": "review",
        "findings": [{"rule": "threshold", "verdict": "fail", "message": "x", "cells": [[1, 0]]}],
    }
    with session_scope(settings) as s:
        for i in range(REQUESTS_IN_DB):
            req = EgressRequest(
                project_slug=PROJECT,
                author=AUTHOR,
                title=f"Request {i}",
                state="under_review",
                submitted_at=utcnow(),
            )
            group = EgressGroup(
                request=req, name="tables", context="Counts by region", controls="Threshold 10"
            )
            s.add_all([req, group])
            for j in range(3):
                f = EgressFile(
                    request=req,
                    group=group,
                    relpath=f"out/t{j}.csv",
                    name=f"t{j}.csv",
                    kind="output",
                    sha256=sha,
                    size=len(CSV),
                    checks=checks,
                )
                s.add(f)
            s.flush()
            for f in req.files[:2]:
                s.add(
                    EgressReview(
                        request_id=req.id, file_id=f.id, file_version=1, checker=CHECKER1, decision="approve"
                    )
                )
            s.add(
                EgressReview(
                    request_id=req.id,
                    file_id=req.files[0].id,
                    file_version=1,
                    checker=CHECKER2,
                    decision="changes",
                )
            )


async def load(port: int, clients: int, seconds: float) -> dict[str, Any]:
    base = "/services/egress/api"
    paths = [f"{base}/requests?scope=queue&limit=20&offset={o}" for o in range(0, REQUESTS_IN_DB, 20)]
    paths += [f"{base}/requests/{i}" for i in range(1, REQUESTS_IN_DB + 1)]
    results: dict[str, Any] = {}
    # Cold: every list page and every request opened once, nothing answered from memory yet.
    todo = list(paths)
    random.shuffle(todo)
    phases: list[tuple[str, Callable[[], str | None]]] = [("cold", lambda: todo.pop() if todo else None)]
    # Steady: a random mix of listing and opening for a fixed time.
    stop_at = 0.0
    phases.append(("steady", lambda: random.choice(paths) if time.perf_counter() < stop_at else None))
    for name, work in phases:
        latencies: list[float] = []
        errors: list[str] = []
        start = time.perf_counter()
        stop_at = start + seconds
        await asyncio.gather(*(client(port, work, latencies, errors, HEADERS) for _ in range(clients)))
        results[name] = summarise(latencies, errors, time.perf_counter() - start)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="egress-bench-") as tmp:
        root = Path(tmp) / "tre"
        t0 = time.perf_counter()
        seed(root)
        print(f"seeded {REQUESTS_IN_DB} requests (3 files, 3 votes each) in {time.perf_counter() - t0:.1f} s")
        from tests.egress_server import Server

        server = Server(root, workers=args.workers).start()
        try:
            results = asyncio.run(load(server.port, args.clients, args.seconds))
        finally:
            server.stop()
    steady = results["steady"]
    met = steady["throughput_rps"] >= TARGET_RPS and steady["p99_ms"] < TARGET_P99_MS and not steady["errors"]
    for name, r in results.items():
        print(
            f"{name:6s}: {r['requests']} requests in {r['seconds']} s, {r['errors']} errors; "
            f"{r['throughput_rps']:.0f} requests/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms"
        )
    print(
        f"targets (steady): >= {TARGET_RPS} requests/s, p99 < {TARGET_P99_MS} ms: "
        + ("met" if met else "NOT met")
    )
    summary = {
        "benchmark": "egress_api",
        "requests_in_db": REQUESTS_IN_DB,
        "clients": args.clients,
        "workers": args.workers,
        **{f"{k}": v for k, v in steady.items()},
        "cold": results["cold"],
        "target_rps": TARGET_RPS,
        "target_p99_ms": TARGET_P99_MS,
        "met": met,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

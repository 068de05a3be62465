"""kill -9 the egress service while it copies a large file and while checkers vote; restart; check.

After the restart no partial file may be visible (no blob whose bytes do not match its address, no
temporaries left), the database must pass its integrity check and the audit chain must verify, and
everything the server acknowledged before dying must still be there.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import threading
import time

import httpx
import pytest
from sqlalchemy import select

from egress.review.base import EgressContext
from egress.review.models import EgressFile, EgressRelease, EgressRequest, EgressReview
from hub.kernel.audit import verify as audit_verify
from hub.kernel.db import dispose_engines, session_scope
from tests.egress_server import Server
from tests.fixtures_egress import AUTHOR, CHECKER1, CHECKER2, PROJECT

pytestmark = pytest.mark.slow
BIG = 192 * 1024 * 1024


def assert_consistent(eg) -> None:
    dispose_engines()
    con = sqlite3.connect(eg.settings.state_dir / "tre.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    con.close()
    ctx = EgressContext(eg.settings)
    with session_scope(eg.settings) as s:
        result = audit_verify(s)
        assert result.ok, result.problems
        for f in s.execute(select(EgressFile)).scalars():
            assert ctx.store.verify(f.sha256), f"file {f.id} points at a missing or partial blob"
    # every blob on disk is whole: its bytes hash to its address
    for blob in (eg.settings.egress_dir / "blobs" / "sha256").glob("*/*"):
        assert ctx.store.verify(blob.parent.name + blob.name), blob
    assert not list((eg.settings.egress_dir / "blobs" / "tmp").glob("*")), "temporary left after restart"


def test_kill_during_large_file_copy(eg):
    big = eg.home() / "out" / "big.csv"
    chunk = hashlib.sha256(b"seed").hexdigest().encode() * (1024 * 32)  # 2 MiB of text
    with open(big, "wb") as fh:
        for _ in range(BIG // len(chunk)):
            fh.write(chunk)
    server = Server(eg.settings.root, {"TRE_EGRESS_MAX_FILE_BYTES": str(BIG * 2)}).start()
    try:
        c = server.client(AUTHOR, timeout=120)
        rid = c.post("/api/requests", json={"project": PROJECT, "title": "big"}).json()["id"]
        gid = c.post(
            f"/api/requests/{rid}/groups", json={"name": "g", "context": "c", "controls": "k"}
        ).json()["id"]
        small = c.post(
            f"/api/requests/{rid}/files", json={"group_id": gid, "path": "out/counts.csv", "kind": "output"}
        )
        assert small.status_code == 201  # acknowledged: must survive

        def add_big():
            with contextlib.suppress(httpx.HTTPError):
                server.client(AUTHOR, timeout=120).post(
                    f"/api/requests/{rid}/files",
                    json={"group_id": gid, "path": "out/big.csv", "kind": "output"},
                )

        worker = threading.Thread(target=add_big)
        worker.start()
        tmp = eg.settings.egress_dir / "blobs" / "tmp"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            partial = [p for p in tmp.glob("*") if p.stat().st_size > 0] if tmp.exists() else []
            if partial:
                break
            time.sleep(0.002)
        assert partial, "the copy never started"
        server.kill9()
        worker.join(timeout=30)
        assert 0 < partial[0].stat().st_size < BIG  # really killed mid-copy

        server.start()  # restart: recovery removes the temporary
        view = server.client(AUTHOR).get(f"/api/requests/{rid}").json()
        assert [f["relpath"] for f in view["files"]] == ["out/counts.csv"]
        assert_consistent(eg)
        # and the interrupted operation simply works when repeated
        again = c.post(
            f"/api/requests/{rid}/files", json={"group_id": gid, "path": "out/big.csv", "kind": "output"}
        )
        assert again.status_code == 201, again.text
    finally:
        server.stop()


def test_kill_during_reviews(eg):
    requests = [eg.submitted()[1][0] for _ in range(12)]  # one output file each
    shas = {fid: eg.sha(fid) for fid in requests}
    server = Server(eg.settings.root).start()
    acknowledged: list[tuple[str, int]] = []
    try:

        def vote_all():
            clients = {u: server.client(u) for u in (CHECKER1, CHECKER2)}
            for fid in requests:
                for user, client in clients.items():
                    try:
                        r = client.post(
                            f"/api/files/{fid}/votes", json={"decision": "approve", "sha256": shas[fid]}
                        )
                    except httpx.HTTPError:
                        return
                    if r.status_code == 200:
                        acknowledged.append((user, fid))

        worker = threading.Thread(target=vote_all)
        worker.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 9 and time.monotonic() < deadline:
            time.sleep(0.001)
        server.kill9()  # mid-stream: votes, approvals and release bundles are in flight
        worker.join(timeout=30)
        assert 9 <= len(acknowledged) < 2 * len(requests)

        server.start()
        assert_consistent(eg)
        with session_scope(eg.settings) as s:
            stored = {(r.checker, r.file_id) for r in s.execute(select(EgressReview)).scalars()}
            assert set(acknowledged) <= stored, "an acknowledged vote was lost"
            states = {r.id: r.state for r in s.execute(select(EgressRequest)).scalars()}
            releases = {r.request_id: r for r in s.execute(select(EgressRelease)).scalars()}
        for rid, state in states.items():
            if state == "released":
                bundle = eg.settings.egress_dir / "releases" / releases[rid].bundle_name
                assert hashlib.sha256(bundle.read_bytes()).hexdigest() == releases[rid].bundle_sha256
            else:
                assert rid not in releases
        assert not list((eg.settings.egress_dir / "releases").glob(".*.tmp"))
        # anything approved but not yet released when the process died can be released now
        for rid, state in states.items():
            if state == "approved":
                r = server.client(CHECKER1).post(f"/api/requests/{rid}/actions/release")
                assert r.json()["state"] == "released"
    finally:
        server.stop()

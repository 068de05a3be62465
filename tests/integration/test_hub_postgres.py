"""The hub with PostgreSQL for both its own database and the registry (TRE_HUB_DB_URL, TRE_DB_URL).

Runs against TRE_TEST_POSTGRES_URL (default: the CI server) in two temporary databases dropped
afterwards. Skipped only when no server answers and CI is not set; in CI it must run.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from tests.fixtures_hub import PASSWORD, Hub, start_hub
from tests.fixtures_postgres import temporary_postgres_databases
from tests.security.test_hub_auth import login

pytestmark = [pytest.mark.postgres, pytest.mark.docker, pytest.mark.slow]

IDLE_TIMEOUT = 20


@pytest.fixture(scope="module")
def pg_hub(tmp_path_factory, hub_image) -> Iterator[tuple[Hub, str]]:
    if os.geteuid() != 0:
        pytest.skip("the hub tests need root (Docker, iptables)")
    with temporary_postgres_databases("tre_reg", "tre_hub") as (registry_url, hub_url):
        # This hub also proves the idle culler works: workspaces idle for 20 s are stopped.
        root = tmp_path_factory.mktemp("pghub") / "tre"
        root.mkdir()
        overrides = {
            "db_url_override": registry_url,
            "hub_db_url_override": hub_url,
            "idle_timeout": IDLE_TIMEOUT,
        }
        for hub in start_hub(root, hub_image, **overrides):
            yield hub, hub_url


def test_hub_on_postgres_spawns_refuses_and_logs_in(pg_hub):
    hub, hub_db = pg_hub
    assert hub.settings.db_url.startswith("postgresql")
    hub.start("alice", "proj-a")
    try:
        r = hub.request_start("mallory", "proj-a")
        assert r.status_code == 403
        assert hub.audit_events("workspace.refused", "proj-a")[-1][0] == "mallory"
        assert hub.audit_events("workspace.start", "proj-a")[-1][0] == "alice"
        with hub.client(base_url=hub.url) as c:
            assert login(c, "bob", PASSWORD, hub.code("bob"))
    finally:
        hub.stop("alice", "proj-a")
    engine = create_engine(hub_db)
    with engine.connect() as conn:
        users = set(conn.execute(text("select name from users")).scalars())
        query = "select length(otp_secret) from users_info where username='bob'"
        secret_len = conn.execute(text(query)).scalar()
    engine.dispose()
    assert {"alice", "mallory", "bob"} <= users  # JupyterHub's own tables live in PostgreSQL
    assert secret_len == 32  # 160-bit TOTP secret fits after the column is widened


def test_idle_culler_stops_idle_workspaces(pg_hub):
    hub, _ = pg_hub
    hub.start("bob", "proj-b")
    container = hub.container("bob", "proj-b")
    deadline = time.monotonic() + IDLE_TIMEOUT + 60  # timeout + one cull interval (10 s) + slack
    while hub.server("bob", "proj-b") is not None:
        assert time.monotonic() < deadline, f"idle workspace not culled:\n{hub.tail()}"
        time.sleep(1)
    # It was the culler that stopped it (nothing else in this test stops servers).
    assert "DELETE /hub/api/users/bob/servers/proj-b (idle-culler@" in hub.tail(2000)
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"name=^{container}$"], capture_output=True, text=True
    )
    assert not out.stdout.strip()  # stopped means removed

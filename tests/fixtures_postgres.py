"""Temporary PostgreSQL databases for the tests that prove the PostgreSQL path.

Against TRE_TEST_POSTGRES_URL (default: the server .ci/setup-host.sh starts). When no server
answers, the test is skipped on a developer machine but FAILS in CI (env CI set): there the
PostgreSQL path must really run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

DEFAULT_URL = "postgresql+psycopg://tre:tre@127.0.0.1/postgres"


@contextlib.contextmanager
def temporary_postgres_databases(*prefixes: str) -> Iterator[list[str]]:
    """Create one fresh database per prefix; yield their URLs; drop them (forcibly) afterwards."""
    server = make_url(os.environ.get("TRE_TEST_POSTGRES_URL", DEFAULT_URL))
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        admin.dispose()
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {server.render_as_string()} is unreachable in CI: {exc}")
        pytest.skip(f"no PostgreSQL server at {server.render_as_string()}")
    tag = secrets.token_hex(4)
    names = [f"{prefix}_{tag}" for prefix in prefixes]
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield [server.set(database=name).render_as_string(hide_password=False) for name in names]
    finally:
        from hub.kernel.db import dispose_engines

        dispose_engines()  # pooled connections would block DROP DATABASE
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

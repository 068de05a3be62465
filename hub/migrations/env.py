"""Alembic environment: runs on the connection `hub.db.upgrade` hands over (no alembic.ini)."""

from __future__ import annotations

import importlib
import importlib.util

from alembic import context
from sqlalchemy import text

import hub.models  # noqa: F401  (registers the registry tables on Base.metadata)
from hub.db import Base, make_engine

# Tables of other parts (egress) register on the same Base once their models module exists.
if importlib.util.find_spec("egress.models") is not None:
    importlib.import_module("egress.models")

# Serialises concurrent upgrades from several entry points on PostgreSQL (SQLite: BEGIN IMMEDIATE).
PG_MIGRATION_LOCK = 0x7472_6530  # "tre0"

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTER needs table rebuilds
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_MIGRATION_LOCK})
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # Plain `alembic` command line use: build an engine from the configured URL.
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.begin() as conn:
        _run(conn)


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `hub.db.upgrade()`")
run_migrations_online()

"""Alembic environment: runs on the connection `hub.kernel.db.upgrade` hands over (no alembic.ini).

The revisions spell out their tables with `op`, so nothing here imports the parts' models (the kernel
knows no part above it). A caller that compares the schema with the models (`alembic check`,
autogenerate) hands their metadata over as `config.attributes["target_metadata"]`:
tests/unit/test_registry.py::test_upgrade_is_idempotent_and_matches_models does.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from hub.kernel.db import make_engine

# Serialises concurrent upgrades from several entry points on PostgreSQL (SQLite: BEGIN IMMEDIATE).
PG_MIGRATION_LOCK = 0x7472_6530  # "tre0"

config = context.config


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=config.attributes.get("target_metadata"),
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
    raise SystemExit("offline (SQL script) migrations are not supported; run `hub.kernel.db.upgrade()`")
run_migrations_online()

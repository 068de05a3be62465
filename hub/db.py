"""Database engine, sessions and migrations: one `Base` for the registry and the egress tables.

SQLite (at `settings.db_url`) is the embedded default; PostgreSQL replaces it by URL (TRE_DB_URL).
The schema is only ever created by Alembic (`upgrade()`), never by `Base.metadata.create_all`, so
the migration history stays the single source of truth.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator

from hub.settings import Settings, get_settings

# Deterministic constraint names so later Alembic revisions (and SQLite batch mode) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLITE_BUSY_TIMEOUT_MS = 30_000


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL keeps the offset (timestamptz); SQLite has no time zone type, so values are stored as
    naive UTC and made aware again when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys, a busy timeout and write-locking BEGINs."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)

    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:":
        # The registry holds the audit log and who may see what: private to the control plane.
        # SQLite gives its -wal/-shm files the main file's mode, so creating it 0600 covers them.
        Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    # NullPool: each session opens its own connection, so forked/threaded users never share one.
    engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so our BEGIN below is the one used.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front: a transaction that reads (e.g. the audit chain head)
        # and then writes can never interleave with another writer. Read-only sessions begin DEFERRED
        # so they never wait for, or hold up, writers (WAL).
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def engine_for(settings: Settings | None = None) -> Engine:
    """The process-wide engine for the settings' database URL."""
    url = (settings or get_settings()).db_url
    with _engines_lock:
        if url not in _engines:
            _engines[url] = make_engine(url)
        return _engines[url]


def dispose_engines() -> None:
    """Close every cached engine (tests do this before dropping a temporary database)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


@contextmanager
def session_scope(settings: Settings | None = None, *, readonly: bool = False) -> Iterator[Session]:
    """A session that commits on success and rolls back (leaving nothing behind) on any error.

    `readonly=True` is for pure look-ups (spawn checks, listings): on SQLite it takes no write lock,
    so a long writer elsewhere cannot delay it. Writing in such a session is a bug (not enforced).
    """
    engine = engine_for(settings)
    if readonly:
        engine = engine.execution_options(sqlite_begin="DEFERRED")
    session = sessionmaker(bind=engine, expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str) -> Any:
    """An Alembic Config built in code, so migrations run from an installed package (no alembic.ini)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(settings: Settings | None = None, revision: str = "head") -> None:
    """Bring the database to `revision` (default head); safe to call on every start."""
    from alembic import command

    settings = settings or get_settings()
    engine = engine_for(settings)
    cfg = alembic_config(settings.db_url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)

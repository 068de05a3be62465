"""Database engine, sessions and migrations: one `Base` for the registry and the egress tables.

SQLite (at `settings.db_url`) is the embedded default; PostgreSQL replaces it by URL (TRE_DB_URL).
The schema is only ever created by Alembic (`upgrade()`), never by `Base.metadata.create_all`, so
the migration history stays the single source of truth.

One engine policy for every part of the TRE. On SQLite, writers get their own connection each
(NullPool) and take the write lock up front (BEGIN IMMEDIATE), so an audit append never interleaves
with another writer; read-only sessions share a small pool of `query_only` connections and begin
DEFERRED, so they neither wait for nor hold up writers (WAL gives them a consistent snapshot).
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

from hub.kernel.settings import Settings

# Deterministic constraint names so later Alembic revisions (and SQLite batch mode) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_POOL_SIZE = 8
# Row ids are positive integers below 2**53: exact in JSON (JavaScript numbers) and SQLite's INTEGER.
MAX_ROW_ID = 2**53


def valid_row_id(value: int) -> bool:
    return 0 < value < MAX_ROW_ID


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


def _sqlite_path(url: str) -> str:
    return url.split("///", 1)[1] if "///" in url else ""


def make_engine(url: str, *, readonly: bool = False) -> Engine:
    """An engine for `url` under the policy in the module docstring."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)

    path = _sqlite_path(url)
    if path and path != ":memory:":
        # The registry holds the audit log and who may see what: private to the control plane.
        # SQLite gives its -wal/-shm files the main file's mode, so creating it 0600 covers them.
        Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    timeout = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    if readonly:
        engine = create_engine(
            url, pool_size=READ_POOL_SIZE, connect_args={**timeout, "check_same_thread": False}
        )
    else:
        # NullPool: each writing session opens its own connection, so threads never share one.
        engine = create_engine(url, poolclass=NullPool, connect_args=timeout)

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so our BEGIN below is the one used.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if readonly:
            cur.execute("PRAGMA query_only=ON")  # a read-only session can never write by mistake
        cur.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN DEFERRED" if readonly else "BEGIN IMMEDIATE")

    return engine


_engines: dict[tuple[str, bool, int], Engine] = {}
# One session factory per engine: each sessionmaker builds a Session class of its own, and setting
# up that class's events cost more than a page's queries when it was built for every session.
_session_factories: dict[Engine, sessionmaker[Session]] = {}
_engines_lock = threading.Lock()


def engine_for(settings: Settings, *, readonly: bool = False) -> Engine:
    """The process's engine for the settings' database (one per process: pools never cross a fork)."""
    url = settings.db_url
    readonly = readonly and url.startswith("sqlite") and _sqlite_path(url) not in ("", ":memory:")
    key = (url, readonly, os.getpid())
    with _engines_lock:
        if key not in _engines:
            _engines[key] = make_engine(url, readonly=readonly)
        return _engines[key]


def _session_factory(settings: Settings, readonly: bool) -> sessionmaker[Session]:
    engine = engine_for(settings, readonly=readonly)
    with _engines_lock:
        if engine not in _session_factories:
            _session_factories[engine] = sessionmaker(bind=engine, expire_on_commit=False)
        return _session_factories[engine]


def dispose_engines() -> None:
    """Close every cached engine (tests do this before dropping a temporary database)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _session_factories.clear()


@contextmanager
def session_scope(settings: Settings, *, readonly: bool = False) -> Iterator[Session]:
    """A session that commits on success and rolls back (leaving nothing behind) on any error.

    `readonly=True` is for look-ups (spawn checks, pages, listings): on SQLite it runs on the
    shared read pool, takes no write lock and refuses writes.
    """
    session = _session_factory(settings, readonly)()
    try:
        yield session
        if not readonly:
            session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        # Closing ends a read-only session's transaction too (its connection goes back to the pool
        # rolled back), without first expiring every object it read, as rollback() would.
        session.close()


def alembic_config(url: str) -> Any:
    """An Alembic Config built in code, so migrations run from an installed package (no alembic.ini)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the database to `revision` (default head); safe to call on every start."""
    from alembic import command

    engine = engine_for(settings)
    cfg = alembic_config(settings.db_url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)

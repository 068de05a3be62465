"""The code log: every piece of code a browser sent a workspace kernel to run, hash-chained.

The guard (on the host, outside every container) writes one row per `execute_request` (and
debugger evaluation) it forwards. Rows link like the audit log's: each hash covers the row and its
predecessor's hash, so editing, deleting or reordering rows shows in `verify()`. It lives in the
registry database, which no workspace can reach. Administrators search it with `tre audit code`;
checkers see a request author's runs on the review page.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Integer, String, Text, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub.kernel.audit import GENESIS_HASH, canonical_json
from hub.kernel.db import Base, UTCDateTime

PG_CODE_LOCK = 0x7472_6543  # "treC"
MAX_CODE_CHARS = 1_000_000  # longer code is stored cut, with its full length and hash


class CodeRun(Base):
    """One piece of code sent to a kernel, as the guard saw it pass."""

    __tablename__ = "code_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    username: Mapped[str] = mapped_column(String(200), index=True)
    project: Mapped[str] = mapped_column(String(200), index=True)
    kernel_id: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[str] = mapped_column(String(200))
    msg_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))  # execute | debug
    code: Mapped[str] = mapped_column(Text)
    code_sha256: Mapped[str] = mapped_column(String(64))  # of the full code, even when `code` is cut
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


@dataclass(frozen=True)
class Run:
    """A run to record (what the guard saw)."""

    time: datetime
    username: str
    project: str
    kernel_id: str
    session_id: str
    msg_id: str
    kind: str
    code: str


def _row_hash(prev_hash: str, row: CodeRun) -> str:
    payload = {
        "prev_hash": prev_hash,
        "time": row.time.isoformat(),
        "username": row.username,
        "project": row.project,
        "kernel_id": row.kernel_id,
        "session_id": row.session_id,
        "msg_id": row.msg_id,
        "kind": row.kind,
        "code": row.code,
        "code_sha256": row.code_sha256,
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def append(session: Session, runs: Iterable[Run]) -> int:
    """Append runs in order in the caller's transaction; returns how many."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_CODE_LOCK})
    prev = session.execute(select(CodeRun.hash).order_by(CodeRun.id.desc()).limit(1)).scalar() or GENESIS_HASH
    n = 0
    for run in runs:
        row = CodeRun(
            time=run.time,
            username=run.username,
            project=run.project,
            kernel_id=run.kernel_id[:64],
            session_id=run.session_id[:200],
            msg_id=run.msg_id[:200],
            kind=run.kind,
            code=run.code[:MAX_CODE_CHARS],
            code_sha256=hashlib.sha256(run.code.encode("utf-8", "surrogatepass")).hexdigest(),
            prev_hash=prev,
        )
        row.hash = prev = _row_hash(prev, row)
        session.add(row)
        n += 1
    session.flush()
    return n


def search(
    session: Session,
    *,
    username: str | None = None,
    project: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    contains: str | None = None,
    limit: int = 200,
) -> list[CodeRun]:
    """Runs matching every filter given, oldest first (the newest `limit` of them)."""
    q = select(CodeRun)
    if username:
        q = q.where(CodeRun.username == username)
    if project:
        q = q.where(CodeRun.project == project)
    if since:
        q = q.where(CodeRun.time >= since)
    if until:
        q = q.where(CodeRun.time <= until)
    if contains:
        q = q.where(CodeRun.code.contains(contains, autoescape=True))
    rows = session.execute(q.order_by(CodeRun.id.desc()).limit(limit)).scalars().all()
    return list(reversed(rows))


@dataclass
class ChainCheck:
    ok: bool
    count: int
    head: str
    problems: list[str] = field(default_factory=list)


def verify(session: Session) -> ChainCheck:
    """Walk the log oldest to newest; report every row that does not link or hash correctly."""
    problems: list[str] = []
    expected = GENESIS_HASH
    count = 0
    rows = session.execute(select(CodeRun).order_by(CodeRun.id).execution_options(yield_per=1000))
    for row in rows.scalars():
        count += 1
        if row.prev_hash != expected:
            problems.append(f"code run {row.id} does not follow the run before it (deleted or reordered)")
        if _row_hash(row.prev_hash, row) != row.hash:
            problems.append(f"code run {row.id} ({row.username}/{row.project}) was edited")
        expected = row.hash
    return ChainCheck(not problems, count, expected, problems)

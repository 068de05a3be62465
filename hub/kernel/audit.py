"""Append-only, hash-chained audit log.

Each event's hash is the SHA-256 of the canonical JSON of (prev_hash, time, actor, action, object,
details), and each event carries its predecessor's hash; so editing, deleting or reordering any
event breaks the chain at that point, which `verify()` reports. The chain head is read and extended
under a write lock (SQLite: every transaction is BEGIN IMMEDIATE, see hub.db; PostgreSQL: a
transaction-scoped advisory lock), so concurrent writers never fork it.

Limit: a chain alone cannot reveal that its newest events were cut off; keep `tre audit verify`
output (which prints the head hash) in an external log to detect truncation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub.kernel.audit_actions import AuditAction
from hub.kernel.clock import utcnow
from hub.kernel.db import Base, UTCDateTime

GENESIS_HASH = "0" * 64
PG_AUDIT_LOCK = 0x7472_6541  # "treA"


class AuditEvent(Base):
    """One link of the append-only audit chain; `hash` covers `prev_hash`, so order is sealed too."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    action: Mapped[str] = mapped_column(String(100), index=True)
    object_type: Mapped[str] = mapped_column(String(50))
    object_id: Mapped[str] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(
    prev_hash: str,
    time: datetime,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    details: dict[str, Any],
) -> str:
    payload = {
        "prev_hash": prev_hash,
        "time": time.isoformat(),
        "actor": actor,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "details": details,
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def _normalise(details: dict[str, Any] | None) -> dict[str, Any]:
    # Store exactly what JSON gives back (datetimes, Paths, tuples become strings/lists), so the hash
    # computed now is the hash recomputed from the stored row later.
    return json.loads(json.dumps(details or {}, default=str))


def _lock_chain(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_AUDIT_LOCK})


def record(
    session: Session,
    actor: str,
    action: AuditAction,
    object_type: str,
    object_id: str,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction (it commits or rolls back with the change)."""
    action = AuditAction(action)  # only catalogued actions: a typo fails here, not in an audit
    _lock_chain(session)
    session.flush()  # earlier events of this same transaction must be visible to the head query
    last = session.execute(select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)).scalar()
    prev_hash = last or GENESIS_HASH
    # Microsecond precision survives both backends, so the stored time hashes the same later.
    time = utcnow()
    clean = _normalise(details)
    event = AuditEvent(
        time=time,
        actor=actor,
        action=action.value,
        object_type=object_type,
        object_id=str(object_id),
        details=clean,
        prev_hash=prev_hash,
        hash=event_hash(prev_hash, time, actor, action.value, object_type, str(object_id), clean),
    )
    session.add(event)
    session.flush()
    return event


@dataclass
class VerifyResult:
    ok: bool
    count: int
    head: str  # hash of the newest event (GENESIS_HASH for an empty log)
    problems: list[str] = field(default_factory=list)


def verify(session: Session) -> VerifyResult:
    """Walk the chain oldest to newest and report every event that does not link or hash correctly."""
    problems: list[str] = []
    expected_prev = GENESIS_HASH
    count = 0
    rows = session.execute(select(AuditEvent).order_by(AuditEvent.id).execution_options(yield_per=1000))
    for ev in rows.scalars():
        count += 1
        if ev.prev_hash != expected_prev:
            problems.append(
                f"event {ev.id} ({ev.action} {ev.object_type}:{ev.object_id}) does not follow the event "
                "before it: an event was deleted, inserted or reordered just before it"
            )
        actual = event_hash(
            ev.prev_hash, ev.time, ev.actor, ev.action, ev.object_type, ev.object_id, ev.details
        )
        if actual != ev.hash:
            problems.append(
                f"event {ev.id} ({ev.action} {ev.object_type}:{ev.object_id}) was edited: "
                "its contents no longer match its hash"
            )
        # Continue from the stored hash so one edit is reported once, not at every later event.
        expected_prev = ev.hash
    return VerifyResult(ok=not problems, count=count, head=expected_prev, problems=problems)


MAX_EVENTS_READ = 500  # one page of the audit log, at most


def read_events(
    session: Session,
    actor: str = "",
    action: str = "",
    object_id: str = "",
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Events newest first, filtered by actor, action prefix and object id (the callers check who may)."""
    q = select(AuditEvent).order_by(AuditEvent.id.desc())
    if actor:
        q = q.where(AuditEvent.actor == actor)
    if action:
        q = q.where(AuditEvent.action.startswith(action, autoescape=True))
    if object_id:
        q = q.where(AuditEvent.object_id == object_id)
    rows = session.execute(q.limit(max(1, min(limit, MAX_EVENTS_READ))).offset(max(0, offset))).scalars()
    return [event_dict(e) for e in rows]


def event_dict(e: AuditEvent) -> dict[str, Any]:
    """An event as plain JSON-ready data (pages, the API, `tre audit show --json`)."""
    return {
        "id": e.id,
        "time": e.time.isoformat(),
        "actor": e.actor,
        "action": e.action,
        "object_type": e.object_type,
        "object_id": e.object_id,
        "details": json.loads(json.dumps(e.details)),
        "hash": e.hash,
    }

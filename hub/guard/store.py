"""What the guard keeps in the registry database: each workspace's bytes sent per day.

Code runs go to the code log (hub.kernel.codelog) and refusals to the audit log; both are written
by the guard's `Recorder` in batches, off the request path.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub.kernel.db import Base, UTCDateTime


class GuardUsage(Base):
    """Bytes a workspace sent to the browser on one UTC day, and how much was withheld."""

    __tablename__ = "guard_usage"

    username: Mapped[str] = mapped_column(String(200), primary_key=True)
    project: Mapped[str] = mapped_column(String(200), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    sent_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    cut_count: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[datetime] = mapped_column(UTCDateTime)


def usage_on(session: Session, day: date) -> list[GuardUsage]:
    rows = session.execute(
        select(GuardUsage).where(GuardUsage.day == day).order_by(GuardUsage.sent_bytes.desc())
    )
    return list(rows.scalars())


def save_usage(session: Session, username: str, project: str, day: date, sent: int, cut: int, now) -> None:
    row = session.get(GuardUsage, (username, project, day))
    if row is None:
        row = GuardUsage(username=username, project=project, day=day)
        session.add(row)
    row.sent_bytes, row.cut_count, row.updated = sent, cut, now

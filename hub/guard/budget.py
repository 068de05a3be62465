"""The daily byte budget of each workspace: pure accounting, no I/O.

Every byte a workspace sends to the browser counts (contents, kernel output, notebooks read back,
API answers), except the image's own static assets. An answer identical to the last one the
browser got for the same request counts once: a poll of an unchanged directory carries nothing new.
The day is the UTC day; the budget is per user per project. See OVERDRAFT for what happens once
the allowance is spent.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

Workspace = tuple[str, str]  # (user, project)
# Once the allowance is spent, outputs are cut but the notebook's own bookkeeping (kernel status,
# replies, polls) still passes, and still counts, up to this fraction more; then the workspace's
# browser channel closes until the day ends. So at most (1 + OVERDRAFT) x the allowance leaves.
OVERDRAFT = 0.1


class BudgetState(StrEnum):
    OPEN = "open"
    SPENT = "spent"  # outputs cut; control messages pass and count
    CLOSED = "closed"  # nothing but the image's static assets until the UTC day ends


REPEATS_REMEMBERED = 512  # per workspace: the last answer's digest for this many request URLs


@dataclass
class Usage:
    day: date
    sent: int = 0
    cut: int = 0  # messages or answers withheld since the budget ran out
    cut_audited: bool = False  # the first cut of the day is audited; later ones are counted
    dirty: bool = False  # changed since it was last saved
    _last: OrderedDict[str, bytes] = field(default_factory=OrderedDict)


class Budget:
    """Bytes sent per workspace per UTC day, against each workspace's daily allowance."""

    def __init__(self) -> None:
        self._usage: dict[Workspace, Usage] = {}

    def usage(self, ws: Workspace, now: datetime) -> Usage:
        today = now.date()
        current = self._usage.get(ws)
        if current is None or current.day != today:
            current = self._usage[ws] = Usage(today)
        return current

    def load(self, ws: Workspace, day: date, sent: int, cut: int) -> None:
        """Take up a saved count (the guard restarted during the day)."""
        self._usage[ws] = Usage(day, sent, cut, cut_audited=cut > 0)

    def state(self, ws: Workspace, allowance: int, now: datetime) -> BudgetState:
        sent = self.usage(ws, now).sent
        if sent >= allowance * (1 + OVERDRAFT):
            return BudgetState.CLOSED
        return BudgetState.SPENT if sent >= allowance else BudgetState.OPEN

    def admit(self, ws: Workspace, n: int, allowance: int, now: datetime, control: bool = False) -> bool:
        """Count `n` bytes and say yes if they fit the allowance (the overdraft too, for `control`)."""
        u = self.usage(ws, now)
        limit = allowance * (1 + OVERDRAFT) if control else allowance
        if u.sent + n > limit:
            return False
        u.sent += n
        u.dirty = True
        return True

    def admit_answer(
        self, ws: Workspace, key: str, body: bytes, allowance: int, now: datetime, control: bool = False
    ) -> bool:
        """`admit` for an HTTP answer, which is free when it repeats the last one for `key`."""
        u = self.usage(ws, now)
        digest = hashlib.blake2b(body, digest_size=16).digest()
        if u._last.get(key) == digest:
            u._last.move_to_end(key)
            return True
        if not self.admit(ws, len(body), allowance, now, control):
            return False
        u._last[key] = digest
        u._last.move_to_end(key)
        while len(u._last) > REPEATS_REMEMBERED:
            u._last.popitem(last=False)
        return True

    def note_cut(self, ws: Workspace, now: datetime) -> bool:
        """Count one withheld answer or message; True when it is the day's first (to audit)."""
        u = self.usage(ws, now)
        u.cut += 1
        u.dirty = True
        first = not u.cut_audited
        u.cut_audited = True
        return first

    def changed(self) -> list[tuple[Workspace, Usage]]:
        """Usage changed since the last call (to save), marked clean."""
        out = []
        for ws, u in self._usage.items():
            if u.dirty:
                u.dirty = False
                out.append((ws, u))
        return out

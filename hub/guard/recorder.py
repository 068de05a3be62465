"""The guard's writes to the registry database, batched off the request path.

Code runs, audit events and byte counts are queued by the request handlers and committed together
every `FLUSH_SECONDS` (or sooner when many are waiting), in one transaction per batch. If the
database cannot take them they stay queued and are retried; when too many are waiting the guard
refuses to forward code it could not record (`accepting`).

Refusals are audited, but a script hammering a refused path must not flood the audit log: each
workspace gets `AUDITS_PER_MINUTE` events per reason a minute, and the next one audited says how
many were left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hub.guard import store
from hub.guard.budget import Budget
from hub.kernel import codelog
from hub.kernel.audit import record
from hub.kernel.audit_actions import AuditAction
from hub.kernel.clock import utcnow
from hub.kernel.db import session_scope
from hub.kernel.settings import Settings

log = logging.getLogger("tre.guard")
FLUSH_SECONDS = 0.25
USAGE_SECONDS = 5.0
MAX_WAITING = 20_000
AUDITS_PER_MINUTE = 10


@dataclass
class _Window:
    start: float
    count: int = 0
    left_out: int = 0


@dataclass
class Recorder:
    settings: Settings
    budget: Budget
    runs: list[codelog.Run] = field(default_factory=list)
    events: list[tuple[str, AuditAction, str, dict[str, Any]]] = field(default_factory=list)
    _windows: dict[tuple[str, str, str], _Window] = field(default_factory=dict)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    healthy: bool = True

    @property
    def accepting(self) -> bool:
        return len(self.runs) + len(self.events) < MAX_WAITING

    def code_run(self, run: codelog.Run) -> None:
        self.runs.append(run)
        if len(self.runs) >= 200:
            self._wake.set()

    def audit(self, user: str, project: str, action: AuditAction, details: dict[str, Any]) -> None:
        self.events.append((user, action, project, details))

    def refusal(self, user: str, project: str, action: AuditAction, reason: str, details: dict) -> None:
        """Audit a refusal or cut, at most AUDITS_PER_MINUTE per workspace and reason."""
        now = time.monotonic()
        key = (user, project, reason)
        w = self._windows.get(key)
        if w is None or now - w.start >= 60:
            left_out = w.left_out if w else 0
            w = self._windows[key] = _Window(now)
            if left_out:
                details = {**details, "left_out_before": left_out}
        if w.count >= AUDITS_PER_MINUTE:
            w.left_out += 1
            return
        w.count += 1
        self.audit(user, project, action, {"reason": reason, **details})

    # --- writing -----------------------------------------------------------------------------------

    def _write(self, runs, events, usage) -> None:
        with session_scope(self.settings) as session:
            if runs:
                codelog.append(session, runs)
            for user, action, project, details in events:
                record(session, user, action, "project", project, details)
            now = utcnow()
            for (user, project), u in usage:
                store.save_usage(session, user, project, u.day, u.sent, u.cut, now)

    async def flush(self, with_usage: bool = True) -> None:
        runs, events = self.runs, self.events
        usage = self.budget.changed() if with_usage else []
        if not (runs or events or usage):
            return
        self.runs, self.events = [], []
        try:
            await asyncio.to_thread(self._write, runs, events, usage)
            self.healthy = True
        except Exception:
            log.exception(
                "could not write %d code runs and %d audit events; retrying", len(runs), len(events)
            )
            self.healthy = False
            self.runs, self.events = runs + self.runs, events + self.events
            for _, u in usage:
                u.dirty = True

    async def run(self, stopping: Callable[[], bool]) -> None:
        last_usage = time.monotonic()
        while not stopping():
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=FLUSH_SECONDS)
            due = time.monotonic() - last_usage >= USAGE_SECONDS
            await self.flush(with_usage=due)
            if due:
                last_usage = time.monotonic()
        await self.flush()

    def load_today(self) -> None:
        """Take up today's counts (the guard restarted during the day)."""
        today = utcnow().date()
        with session_scope(self.settings, readonly=True) as session:
            for row in store.usage_on(session, today):
                self.budget.load((row.username, row.project), today, row.sent_bytes, row.cut_count)

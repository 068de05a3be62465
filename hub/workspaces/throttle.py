"""Login rules that need no I/O: how long a username waits after failures, and one-use TOTP codes.

A lock-out that every failed attempt extends lets anyone keep another person out for ever by
guessing once in a while. Here a username's failures buy a growing delay (after `free` failures:
`first`, then twice that, ... up to `longest`); attempts during a delay are refused unchecked and
neither count nor extend it, so the owner can log in whenever a delay has run out. Unknown
usernames are throttled the same way, so the throttle says nothing about who exists.

A TOTP code is good for its 30 s step (and one step either side, for clock drift); `OneUseCodes`
accepts each step of each user at most once, so a code seen over a shoulder or in a proxy log
cannot be replayed.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pyotp


@dataclass
class _Record:
    failures: int = 0
    until: float = 0.0  # the clock time the current delay ends


@dataclass
class LoginThrottle:
    free: int  # failures before any delay
    first: float  # seconds of the first delay
    longest: float  # no delay is longer than this
    clock: Callable[[], float] = time.monotonic
    _records: dict[str, _Record] = field(default_factory=dict)

    def wait(self, username: str) -> float:
        """Seconds until `username` may try again (0: now)."""
        record = self._records.get(username)
        return max(0.0, record.until - self.clock()) if record else 0.0

    def failed(self, username: str) -> float:
        """Count a failure (made when no delay was running); returns the delay it starts."""
        record = self._records.setdefault(username, _Record())
        record.failures += 1
        over = record.failures - self.free
        delay = 0.0 if over <= 0 else min(self.longest, self.first * 2 ** (over - 1))
        record.until = self.clock() + delay
        return delay

    def failures(self, username: str) -> int:
        record = self._records.get(username)
        return record.failures if record else 0

    def succeeded(self, username: str) -> None:
        self._records.pop(username, None)


@dataclass
class OneUseCodes:
    drift: int = 1  # steps either side of now that are accepted
    clock: Callable[[], float] = time.time
    _last_step: dict[str, int] = field(default_factory=dict)

    def accept(self, username: str, secret: str, code: str) -> bool:
        """True for a valid code of a step after the last one this user logged in with."""
        code = code.strip().replace(" ", "")
        if not (secret and code.isdigit()):
            return False
        totp = pyotp.TOTP(secret)
        now = int(self.clock() // totp.interval)
        last = self._last_step.get(username, -1)
        for step in range(now - self.drift, now + self.drift + 1):
            if step > last and hmac.compare_digest(totp.generate_otp(step), code):
                self._last_step[username] = step
                return True
        return False

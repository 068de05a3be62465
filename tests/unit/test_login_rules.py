"""The login rules without a hub: a throttle nobody can turn into a permanent lock-out, one-use codes."""

from __future__ import annotations

import pyotp

from hub.workspaces.throttle import LoginThrottle, OneUseCodes


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_buy_a_growing_delay_that_attempts_during_it_do_not_extend():
    clock = Clock()
    throttle = LoginThrottle(free=3, first=10, longest=60, clock=clock)
    delays = []
    for _ in range(7):
        delays.append(throttle.failed("ann"))
        clock.now += throttle.wait("ann")  # the attacker waits each delay out, then guesses again
    assert delays == [0, 0, 0, 10, 20, 40, 60]
    # Guessing during a delay is refused by the caller without calling failed(): the delay ends when
    # it was due, and then the owner may log in (a success clears the record).
    clock.now += 1
    assert throttle.wait("ann") == 0
    throttle.succeeded("ann")
    assert throttle.failures("ann") == 0 and throttle.failed("ann") == 0


def test_usernames_are_throttled_apart_and_alike_whether_they_exist_or_not():
    clock = Clock()
    throttle = LoginThrottle(free=1, first=5, longest=5, clock=clock)
    throttle.failed("nobody-at-all")
    assert throttle.failed("nobody-at-all") == 5
    assert throttle.wait("ann") == 0  # another user is untouched


def test_a_code_is_accepted_once():
    secret = pyotp.random_base32(32)
    clock = Clock()
    clock.now = 1_800_000_000.0
    codes = OneUseCodes(clock=clock)
    now_code = pyotp.TOTP(secret).at(clock.now)
    assert codes.accept("ann", secret, now_code)
    assert not codes.accept("ann", secret, now_code), "the same code was accepted twice"
    assert not codes.accept("ann", secret, pyotp.TOTP(secret).at(clock.now - 30)), "an older step"
    assert codes.accept("ann", secret, pyotp.TOTP(secret).at(clock.now + 30))  # the next step, once
    assert codes.accept("bob", secret, now_code)  # per user
    assert not codes.accept("ann", secret, "12 34 5x") and not codes.accept("ann", "", now_code)

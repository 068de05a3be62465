"""Hub login: NativeAuthenticator (bcrypt passwords, TOTP, lock-out) with the TRE's stricter rules.

NativeAuthenticator 1.3 is half-compatible with JupyterHub 6: its password store (the `users_info`
table, through the hub's deprecated but still present shared DB session) works, but its login page
handler does not (it calls the removed `statsd` and an old `_render` signature, so every login POST is
a 500). We therefore keep its store and password-change pages, serve login with JupyterHub's own
handler (which has had a one-time-password field since 5.0), and tighten four things:

- no self sign-up and no password-change page: administrators issue and reset logins
  (`tre user add` / `tre user reset-login` -> `create_login`);
- TOTP is mandatory for every account (only TRE_DEMO_NO_MFA=1 relaxes it, loudly), and each code
  is accepted once (hub.workspaces.throttle.OneUseCodes, one step of clock drift);
- passwords are checked with `bcrypt.checkpw` (constant time; over-long input is a failed login, not
  a server error), unknown usernames against a dummy hash so they take as long;
- failures buy a growing per-username delay that attempts during it do not extend
  (hub.workspaces.throttle.LoginThrottle); failures and delays are audited.
"""

from __future__ import annotations

import logging
import secrets
from contextlib import contextmanager
from functools import cache, cached_property
from pathlib import Path

import bcrypt
import pyotp
from jupyterhub import orm
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.orm import UserInfo
from sqlalchemy import text
from traitlets import Bool, default

from hub.kernel.audit import record
from hub.kernel.audit_actions import AuditAction
from hub.kernel.db import session_scope
from hub.kernel.settings import Settings
from hub.workspaces.configured import WithTRESettings
from hub.workspaces.throttle import LoginThrottle, OneUseCodes

log = logging.getLogger("tre.auth")
# 32 base32 characters = 160 bits (RFC 4226's recommendation). NativeAuthenticator declares the column
# VARCHAR(16); SQLite ignores the length, and `_widen_otp_column` fixes it on PostgreSQL.
TOTP_SECRET_CHARS = 32
BCRYPT_MAX_BYTES = 72


def totp_uri(username: str, secret: str, issuer: str = "TRE") -> str:
    """otpauth:// URI for authenticator apps (shown once, as a QR code, by `tre user add`)."""
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=issuer)


def _hash(password: str) -> bytes:
    raw = password.encode()
    if len(raw) > BCRYPT_MAX_BYTES:
        raise ValueError(f"passwords are limited to {BCRYPT_MAX_BYTES} bytes")
    return bcrypt.hashpw(raw, bcrypt.gensalt())


def _widen_otp_column(session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ALTER TABLE users_info ALTER COLUMN otp_secret TYPE VARCHAR(64)"))


@contextmanager
def _logging_kept():
    """JupyterHub's Alembic env.py calls logging.config.fileConfig when it migrates the hub database
    outside a running hub, rebinding the root logger to whatever sys.stderr is at that moment. Keep
    the caller's logging setup as it was."""
    loggers = [logging.getLogger(name) for name in ("", "alembic", "sqlalchemy")]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in loggers]
    try:
        yield
    finally:
        for lg, handlers, level, propagate, disabled in saved:
            lg.handlers[:] = handlers
            lg.level, lg.propagate, lg.disabled = level, propagate, disabled


def create_login(username: str, password: str, settings: Settings) -> str:
    """Create (or reset) `username`'s hub login; return the new TOTP secret (base32).

    Writes straight into the hub database (creating its schema if the hub never ran), so accounts can
    be made before the hub starts. Resetting gives a new password and a new TOTP secret.
    """
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    username = username.strip().lower()
    if len(password) < 12:
        raise ValueError("passwords must have at least 12 characters")
    secret = pyotp.random_base32(length=TOTP_SECRET_CHARS)
    with _logging_kept():
        session = orm.new_session_factory(settings.hub_db_url)()
    try:
        _widen_otp_column(session)
        info = UserInfo.find(session, username)
        if info is None:
            info = UserInfo(username=username, password=_hash(password), otp_secret=secret)
            session.add(info)
        else:
            info.password = _hash(password)
            info.otp_secret = secret
        info.is_authorized = True
        info.has_2fa = True
        session.commit()
    finally:
        session.close()
        session.get_bind().dispose()
    protect_hub_db(settings)
    return secret


def protect_hub_db(settings: Settings) -> None:
    """The hub database holds password hashes and TOTP secrets: keep it (and its directory) private."""
    settings.state_dir.chmod(0o700)
    url = settings.hub_db_url
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            path.touch(mode=0o600)
        path.chmod(0o600)


def issue_login(username: str, settings: Settings, password: str | None = None) -> dict:
    """Create or reset a hub login for `tre user add` / `tre user reset-login`.

    Without a password one is generated. Returns what the administrator hands over, once:
    {"password" (only if generated), "totp_secret", "totp_uri"}.
    """
    generated = password is None
    password = password if password is not None else secrets.token_urlsafe(15)
    secret = create_login(username, password, settings)
    out = {"totp_secret": secret, "totp_uri": totp_uri(username, secret)}
    if generated:
        out["password"] = password
    return out


@cache
def _unknown_user_hash() -> bytes:
    """Checked against when a username is unknown, so that costs as long as a wrong password."""
    return bcrypt.hashpw(b"no such user", bcrypt.gensalt())


def audit_login(settings: Settings, actor: str, action: AuditAction, details: dict) -> None:
    try:
        with session_scope(settings) as session:
            record(session, actor, action, "user", actor, details)
    except Exception:  # an unreachable registry must not turn a failed login into a 500
        log.exception("could not audit %s for %s", action, actor)


class TREAuthenticator(WithTRESettings, NativeAuthenticator):
    """NativeAuthenticator with sign-up off, TOTP mandatory and an audited lock-out."""

    mfa_required = Bool(True, config=True, help="Refuse logins without a TOTP code (the TRE default).")

    @default("mfa_required")
    def _mfa_default(self) -> bool:
        if self.tre_settings.demo_no_mfa:
            self.log.warning(
                "!!! TRE_DEMO_NO_MFA=1: TOTP two-factor login is OFF. This is for a local demo only; "
                "never run a TRE with real data like this. !!!"
            )
            return False
        return True

    @default("enable_signup")
    def _no_signup(self) -> bool:
        return False

    @default("request_otp")
    def _ask_otp(self) -> bool:
        return self.mfa_required

    @default("otp_prompt")
    def _otp_prompt(self) -> str:
        return "Code from your authenticator app:"

    @default("allow_all")
    def _allow_all(self) -> bool:
        # Only accounts an administrator created (and authorized) can authenticate at all.
        return True

    @cached_property
    def throttle(self) -> LoginThrottle:
        s = self.tre_settings
        # The lockout_after-th failure in a row starts the first delay.
        return LoginThrottle(max(0, s.lockout_after - 1), s.lockout_delay, s.lockout_seconds)

    @cached_property
    def codes(self) -> OneUseCodes:
        return OneUseCodes()

    def _valid_password(self, info: UserInfo | None, password: str) -> bool:
        raw = password.encode()
        if len(raw) > BCRYPT_MAX_BYTES:
            return False
        # An unknown username costs the same bcrypt check as a known one: no timing tells who exists.
        valid = bcrypt.checkpw(raw, info.password if info is not None else _unknown_user_hash())
        return valid and info is not None and bool(info.is_authorized)

    async def authenticate(self, handler, data):
        username = self.normalize_username(data.get("username", ""))
        settings = self.tre_settings
        wait = self.throttle.wait(username)
        if wait:
            # Refused unchecked; not counted and not extended, so guessing cannot keep the owner out.
            audit_login(settings, username, AuditAction.LOGIN_LOCKED, {"seconds_left": round(wait, 1)})
            return None
        info = self.get_user(username)
        ok = self._valid_password(info, data.get("password", ""))
        if ok and self.mfa_required:
            ok = bool(info.has_2fa) and self.codes.accept(username, info.otp_secret, data.get("otp") or "")
        if ok:
            self.throttle.succeeded(username)
            return username
        delay = self.throttle.failed(username)
        failures = self.throttle.failures(username)
        audit_login(settings, username, AuditAction.LOGIN_FAILED, {"failures": failures, "delay": delay})
        if delay:
            self.log.warning("login for %s delayed %.0f s after %d failures", username, delay, failures)
        return None

    def get_handlers(self, app):
        # JupyterHub's own /login replaces NativeAuthenticator's broken one; sign-up, its approval
        # pages and the password-change page are not served: administrators issue and reset logins
        # (`tre user reset-login`), so no page lets a session change a credential unthrottled.
        return []

    def create_user(self, username, password, **kwargs):
        # Sign-up through the hub is off; admins use `tre user add`.
        return None

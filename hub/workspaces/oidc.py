"""Institutional sign-in: an OpenID Connect provider proves who someone is, the registry decides
who may use the TRE (docs/oidc.md)."""

from __future__ import annotations

from oauthenticator.generic import GenericOAuthenticator
from sqlalchemy import select

from hub.kernel.audit_actions import AuditAction
from hub.kernel.db import session_scope
from hub.kernel.settings import Settings
from hub.registry.models import User
from hub.workspaces.configured import WithTRESettings
from hub.workspaces.login import audit_login


def registered_and_enabled(settings: Settings, username: str) -> bool:
    """Is `username` a registry user whose account is not disabled? (The registry decides who exists.)"""
    with session_scope(settings, readonly=True) as session:
        user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
        return user is not None and not user.disabled


class TREOIDCAuthenticator(WithTRESettings, GenericOAuthenticator):
    """An institution's OIDC login (GenericOAuthenticator) admitting only registry users.

    The identity provider proves who someone is (and must enforce MFA: see docs/oidc.md); the TRE
    registry still decides who may use the TRE at all, exactly as with local logins.
    """

    async def check_allowed(self, username: str, auth_model: dict | None) -> bool:
        if not registered_and_enabled(self.tre_settings, username):
            self.log.warning("OIDC login by %s refused: not an enabled registry user", username)
            audit_login(
                self.tre_settings,
                username,
                AuditAction.LOGIN_REFUSED,
                {"via": "oidc", "reason": "not an enabled registry user"},
            )
            return False
        return True

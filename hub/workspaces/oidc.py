"""Institutional sign-in: an OpenID Connect provider proves who someone is, the registry decides
who may use the TRE (docs/oidc.md).

The provider's account is matched on an immutable claim (`sub` by default, or the one the site
names) that an administrator linked to a registry user; an editable claim such as
preferred_username never decides who someone is here, so renaming oneself at the provider gets
nobody in. Where the site relies on the provider for MFA it names the `acr` values or `amr` methods
a login must carry, and a login without them is refused.
"""

from __future__ import annotations

import jwt
from oauthenticator.generic import GenericOAuthenticator
from sqlalchemy import select
from tornado import web

from hub.kernel.audit_actions import AuditAction
from hub.kernel.db import session_scope
from hub.kernel.settings import Settings
from hub.registry.models import User
from hub.workspaces.configured import WithTRESettings
from hub.workspaces.login import audit_login


def registry_username_for(settings: Settings, subject: str) -> str | None:
    """The enabled registry user linked to this subject at the provider, if any."""
    with session_scope(settings, readonly=True) as session:
        user = session.execute(select(User).where(User.subject == subject)).scalar_one_or_none()
        return user.username if user is not None and not user.disabled else None


def mfa_problem(settings: Settings, claims: dict) -> str | None:
    """Why the login does not show the MFA the site requires (None when it does, or none is required)."""
    acr_wanted = {v.strip() for v in settings.oidc_required_acr.split(",") if v.strip()}
    amr_wanted = {v.strip() for v in settings.oidc_required_amr.split(",") if v.strip()}
    if acr_wanted and str(claims.get("acr", "")) not in acr_wanted:
        return f"the provider reports acr {claims.get('acr')!r}, not one of {sorted(acr_wanted)}"
    amr = claims.get("amr") or []
    if amr_wanted and not amr_wanted & set(amr if isinstance(amr, list) else [amr]):
        return f"the provider reports amr {amr!r}, none of {sorted(amr_wanted)}"
    return None


def _claims(auth_model: dict) -> dict:
    """The login's claims: the ID token's (from the token endpoint, over TLS) and the userinfo's."""
    state = auth_model.get("auth_state") or {}
    claims: dict = {}
    if state.get("id_token"):
        claims.update(jwt.decode(state["id_token"], options={"verify_signature": False}))
    claims.update(state.get("oauth_user") or {})
    return claims


class TREOIDCAuthenticator(WithTRESettings, GenericOAuthenticator):
    """An institution's OIDC login (GenericOAuthenticator) admitting only linked, enabled registry users."""

    def user_info_to_username(self, user_info: dict) -> str:
        subject = super().user_info_to_username(user_info)  # the configured immutable claim
        username = registry_username_for(self.tre_settings, str(subject))
        if username is None:
            self.log.warning(
                "OIDC login refused: subject %r is not linked to an enabled registry user", subject
            )
            audit_login(
                self.tre_settings,
                f"oidc:{subject}",
                AuditAction.LOGIN_REFUSED,
                {"via": "oidc", "reason": "subject not linked to an enabled registry user"},
            )
            raise web.HTTPError(
                403, "This institutional account is not registered with the TRE; ask an administrator."
            )
        return username

    async def check_allowed(self, username: str, auth_model: dict | None) -> bool:
        problem = mfa_problem(self.tre_settings, _claims(auth_model or {}))
        if problem:
            self.log.warning("OIDC login by %s refused: %s", username, problem)
            audit_login(
                self.tre_settings, username, AuditAction.LOGIN_REFUSED, {"via": "oidc", "reason": problem}
            )
            return False
        return True

"""Institutional sign-in: the OIDC configuration loads, and the authenticator admits a person only by
the provider's immutable subject, linked to an enabled registry user, with the MFA the site requires.

No real provider runs here: the provider's answers (userinfo, ID token) are given to the real
authenticator methods that JupyterHub calls with them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import jwt
import pytest
from tornado import web
from traitlets.config.loader import PyFileConfigLoader

EXAMPLE = Path(__file__).resolve().parents[2] / "hub" / "workspaces" / "oidc_config.py"


@pytest.fixture
def oidc(registry, make_users, tmp_path, monkeypatch):
    from hub.workspaces.oidc import TREOIDCAuthenticator

    secret = tmp_path / "oidc-client-secret"
    secret.write_text("s3cret\n")
    for name, value in {
        "TRE_OIDC_ISSUER": "https://login.example.invalid/realms/research",
        "TRE_OIDC_CLIENT_ID": "tre-hub",
        "TRE_OIDC_CLIENT_SECRET_FILE": str(secret),
        "TRE_DOMAIN": "tre.example.invalid",
        "TRE_PUBLIC_PORT": "443",
        "TRE_OIDC_ACR_VALUES": "mfa",
        "TRE_OIDC_REQUIRED_AMR": "mfa,otp",
    }.items():
        monkeypatch.setenv(name, value)
    config = PyFileConfigLoader(EXAMPLE.name, path=str(EXAMPLE.parent)).load_config()
    make_users()
    return config, TREOIDCAuthenticator(config=config)


def test_oidc_example_config_loads(oidc):
    config, auth = oidc
    assert config.JupyterHub.authenticator_class == "hub.workspaces.oidc.TREOIDCAuthenticator"
    assert config.JupyterHub.spawner_class == "hub.workspaces.spawner.TRESpawner"  # the TRE's config
    assert auth.client_id == "tre-hub" and auth.client_secret == "s3cret"
    assert auth.authorize_url == "https://login.example.invalid/realms/research/protocol/openid-connect/auth"
    assert auth.oauth_callback_url == "https://tre.example.invalid/hub/oauth_callback"
    assert auth.enable_pkce and auth.extra_authorize_params == {"acr_values": "mfa"}
    assert auth.username_claim == "sub"
    assert not auth.allow_all and not auth.admin_users


def test_renaming_oneself_at_the_provider_gets_nobody_in(oidc, registry):
    """preferred_username is editable at many providers: it must never decide who someone is."""
    from hub.kernel.db import session_scope
    from hub.registry import set_user_disabled, set_user_subject

    _, auth = oidc
    with pytest.raises(web.HTTPError) as refused:
        auth.user_info_to_username({"sub": "idp-mallory", "preferred_username": "researcher"})
    assert refused.value.status_code == 403
    with session_scope(registry) as s:
        set_user_subject(s, "admin", "researcher", "idp-777")
    # The linked subject is the researcher whatever name the provider shows today.
    renamed = {"sub": "idp-777", "preferred_username": "someone-else"}
    assert auth.user_info_to_username(renamed) == "researcher"
    with session_scope(registry) as s:
        set_user_disabled(s, "admin", "researcher", True)
    with pytest.raises(web.HTTPError):
        auth.user_info_to_username({"sub": "idp-777"})


def test_a_login_without_the_required_mfa_is_refused(oidc):
    _, auth = oidc

    def model(**claims):
        key = "a key only this test knows; the hub does not verify it"
        token = jwt.encode({"sub": "idp-777", **claims}, key, algorithm="HS256")
        return {"name": "researcher", "auth_state": {"id_token": token, "oauth_user": {"sub": "idp-777"}}}

    assert not asyncio.run(auth.check_allowed("researcher", model()))
    assert not asyncio.run(auth.check_allowed("researcher", model(amr=["pwd"])))
    assert asyncio.run(auth.check_allowed("researcher", model(amr=["pwd", "otp"])))


def test_subjects_are_linked_by_another_administrator_once(registry, make_users):
    from hub import registry as reg
    from hub.kernel.db import session_scope

    make_users()
    with pytest.raises(reg.NotAllowed), session_scope(registry) as s:
        reg.set_user_subject(s, "admin", "admin", "idp-1")  # nobody links their own identity
    with session_scope(registry) as s:
        reg.set_user_subject(s, "admin", "researcher", "idp-1")
    with pytest.raises(reg.RegistryError, match="already linked"), session_scope(registry) as s:
        reg.set_user_subject(s, "admin", "lead", "idp-1")

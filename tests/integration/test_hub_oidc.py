"""The OIDC example configuration loads, and the OIDC authenticator admits only registry users."""

from __future__ import annotations

import asyncio
from pathlib import Path

from traitlets.config.loader import PyFileConfigLoader

EXAMPLE = Path(__file__).resolve().parents[2] / "hub" / "workspaces" / "oidc_config.py"


def test_oidc_example_config_loads_and_admits_only_registry_users(
    registry, make_users, tmp_path, monkeypatch
):
    from hub.kernel.db import session_scope
    from hub.registry import set_user_disabled
    from hub.workspaces.oidc import TREOIDCAuthenticator

    secret = tmp_path / "oidc-client-secret"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("TRE_OIDC_ISSUER", "https://login.example.invalid/realms/research")
    monkeypatch.setenv("TRE_OIDC_CLIENT_ID", "tre-hub")
    monkeypatch.setenv("TRE_OIDC_CLIENT_SECRET_FILE", str(secret))
    monkeypatch.setenv("TRE_PUBLIC_URL", "https://tre.example.invalid")
    monkeypatch.setenv("TRE_OIDC_ACR_VALUES", "mfa")
    config = PyFileConfigLoader(EXAMPLE.name, path=str(EXAMPLE.parent)).load_config()

    assert config.JupyterHub.authenticator_class == "hub.workspaces.oidc.TREOIDCAuthenticator"
    assert config.JupyterHub.spawner_class == "hub.workspaces.spawner.TRESpawner"  # the TRE's config
    auth = TREOIDCAuthenticator(config=config)
    assert auth.client_id == "tre-hub" and auth.client_secret == "s3cret"
    assert auth.authorize_url == "https://login.example.invalid/realms/research/protocol/openid-connect/auth"
    assert auth.oauth_callback_url == "https://tre.example.invalid/hub/oauth_callback"
    assert auth.enable_pkce and auth.extra_authorize_params == {"acr_values": "mfa"}
    assert not auth.allow_all and not auth.admin_users

    make_users()
    assert asyncio.run(auth.check_allowed("researcher", {"name": "researcher"}))
    assert not asyncio.run(auth.check_allowed("stranger", {"name": "stranger"}))
    with session_scope(registry) as s:
        set_user_disabled(s, "admin", "researcher", True)
    assert not asyncio.run(auth.check_allowed("researcher", {"name": "researcher"}))

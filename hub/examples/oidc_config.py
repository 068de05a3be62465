"""Institutional single sign-on: the TRE hub with an OpenID Connect identity provider.

Use instead of hub/jupyterhub_config.py (see docs/oidc.md):

    TRE_OIDC_ISSUER=https://login.example.ac.uk/realms/research \
    TRE_OIDC_CLIENT_ID=tre-hub TRE_OIDC_CLIENT_SECRET_FILE=/srv/tre/keys/oidc-client-secret \
    TRE_PUBLIC_URL=https://tre.example.ac.uk \
    jupyterhub -f hub/examples/oidc_config.py

Everything else (spawner, network, services, secrets) is the standard TRE configuration.
"""

import os
from pathlib import Path

from hub.jupyterhub_config import configure

c = get_config()  # noqa: F821 - provided by traitlets when this file is loaded as config
configure(c)

issuer = os.environ["TRE_OIDC_ISSUER"].rstrip("/")
public_url = os.environ["TRE_PUBLIC_URL"].rstrip("/")

c.JupyterHub.authenticator_class = "hub.auth.TREOIDCAuthenticator"
c.GenericOAuthenticator.login_service = os.environ.get("TRE_OIDC_NAME", "institutional login")
c.GenericOAuthenticator.client_id = os.environ["TRE_OIDC_CLIENT_ID"]
# The secret stays in a 0600 file, not in the environment or this file.
c.GenericOAuthenticator.client_secret = Path(os.environ["TRE_OIDC_CLIENT_SECRET_FILE"]).read_text().strip()
c.GenericOAuthenticator.oauth_callback_url = f"{public_url}/hub/oauth_callback"
# Endpoints as published in the provider's /.well-known/openid-configuration (Keycloak paths shown;
# set TRE_OIDC_*_URL for other providers).
c.GenericOAuthenticator.authorize_url = os.environ.get(
    "TRE_OIDC_AUTHORIZE_URL", f"{issuer}/protocol/openid-connect/auth"
)
c.GenericOAuthenticator.token_url = os.environ.get(
    "TRE_OIDC_TOKEN_URL", f"{issuer}/protocol/openid-connect/token"
)
c.GenericOAuthenticator.userdata_url = os.environ.get(
    "TRE_OIDC_USERINFO_URL", f"{issuer}/protocol/openid-connect/userinfo"
)
c.GenericOAuthenticator.scope = ["openid", "profile", "email"]
# The claim must equal the TRE username that `tre user add` registered (lowercase slug).
c.GenericOAuthenticator.username_claim = os.environ.get("TRE_OIDC_USERNAME_CLAIM", "preferred_username")
c.GenericOAuthenticator.enable_pkce = True
# Ask the provider for its multi-factor level; what the value is called is provider-specific.
if os.environ.get("TRE_OIDC_ACR_VALUES"):
    c.GenericOAuthenticator.extra_authorize_params = {"acr_values": os.environ["TRE_OIDC_ACR_VALUES"]}
# Only registry users get in (TREOIDCAuthenticator.check_allowed); nobody is a hub admin.
c.GenericOAuthenticator.allow_all = False
c.GenericOAuthenticator.admin_users = set()

"""Institutional single sign-on: the TRE hub with an OpenID Connect identity provider.

Use instead of hub/workspaces/jupyterhub_config.py (see docs/oidc.md):

    TRE_OIDC_ISSUER=https://login.example.ac.uk/realms/research \
    TRE_OIDC_CLIENT_ID=tre-hub TRE_OIDC_CLIENT_SECRET_FILE=/srv/tre/keys/oidc-client-secret \
    TRE_DOMAIN=tre.example.ac.uk \
    jupyterhub -f hub/workspaces/oidc_config.py

Everything else (spawner, network, services, secrets) is the standard TRE configuration.
"""

from pathlib import Path

from hub.kernel.settings import SettingsError, get_settings
from hub.workspaces.jupyterhub_config import configure

c = get_config()  # noqa: F821 - provided by traitlets when this file is loaded as config
settings = get_settings()
configure(c, settings)

for needed in ("oidc_issuer", "oidc_client_id", "oidc_client_secret_file"):
    if not getattr(settings, needed):
        raise SettingsError(f"TRE_{needed.upper()} must be set for institutional sign-in (docs/oidc.md)")
issuer = settings.oidc_issuer.rstrip("/")
public_url = settings.public_url.rstrip("/")

c.JupyterHub.authenticator_class = "hub.workspaces.oidc.TREOIDCAuthenticator"
c.GenericOAuthenticator.login_service = settings.oidc_name
c.GenericOAuthenticator.client_id = settings.oidc_client_id
# The secret stays in a 0600 file, not in the environment or this file.
c.GenericOAuthenticator.client_secret = Path(settings.oidc_client_secret_file).read_text().strip()
c.GenericOAuthenticator.oauth_callback_url = f"{public_url}/hub/oauth_callback"
# Endpoints as published in the provider's /.well-known/openid-configuration (Keycloak paths shown;
# set TRE_OIDC_*_URL for other providers).
c.GenericOAuthenticator.authorize_url = (
    settings.oidc_authorize_url or f"{issuer}/protocol/openid-connect/auth"
)
c.GenericOAuthenticator.token_url = settings.oidc_token_url or f"{issuer}/protocol/openid-connect/token"
c.GenericOAuthenticator.userdata_url = (
    settings.oidc_userinfo_url or f"{issuer}/protocol/openid-connect/userinfo"
)
c.GenericOAuthenticator.scope = ["openid", "profile", "email"]
# People are found by the provider's immutable subject, linked to registry users by an administrator
# (`tre user set-subject`); TREOIDCAuthenticator maps it to the TRE username.
c.GenericOAuthenticator.username_claim = settings.oidc_subject_claim
c.GenericOAuthenticator.enable_pkce = True
# Ask the provider for its multi-factor level; what the value is called is provider-specific.
if settings.oidc_acr_values:
    c.GenericOAuthenticator.extra_authorize_params = {"acr_values": settings.oidc_acr_values}
# Only registry users get in (TREOIDCAuthenticator.check_allowed); nobody is a hub admin.
c.GenericOAuthenticator.allow_all = False
c.GenericOAuthenticator.admin_users = set()

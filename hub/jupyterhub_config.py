"""JupyterHub configuration for the TRE (`jupyterhub -f hub/jupyterhub_config.py`, run by `tre hub`).

Everything comes from hub.settings plus a few hub-only environment variables:

  TRE_PUBLIC_IP      address of the public proxy port (default 127.0.0.1; a reverse proxy with TLS
                     goes in front in production)
  TRE_PROXY_API_PORT configurable-http-proxy's API port on 127.0.0.1 (default public port + 1)
  TRE_HUB_DB_URL     JupyterHub's database (default SQLite in the state directory; PostgreSQL as
                     postgresql+psycopg://user:pass@host/db)
  TRE_IDLE_TIMEOUT   seconds of inactivity before the culler stops a workspace (default 3600)
  TRE_MAX_AGE        seconds after which a workspace is stopped whatever it does (default 0: never)
  TRE_DEMO_NO_MFA    1 turns TOTP off (demo only; logged loudly)
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from hub.auth import hub_db_url, protect_hub_db
from hub.network import gateway_ip
from hub.secrets import read_or_create_secret
from hub.settings import Settings, get_settings

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ADMIN_SERVICE = "tre-admin"
ADMIN_TOKEN_FILE = "hub-admin-token"  # noqa: S105 - a file name, not a secret


def proxy_api_port(settings: Settings) -> int:
    return int(os.environ.get("TRE_PROXY_API_PORT", settings.public_port + 1))


def admin_token(settings: Settings | None = None) -> str:
    """The `tre` command line's API token for the hub (0600 in the state directory)."""
    settings = settings or get_settings()
    return read_or_create_secret(settings.state_dir / ADMIN_TOKEN_FILE).decode()


def proxy_command() -> list[str]:
    local = REPO / ".node/node_modules/.bin/configurable-http-proxy"
    found = shutil.which("configurable-http-proxy") or local
    if not Path(found).exists():
        raise SystemExit("configurable-http-proxy is not installed; run `make proxy`")
    return [str(found)]


def _projects_for(user: Any) -> list[Any]:
    """The home page's project list (JupyterHub calls template_vars callables with the page's user).

    Registry facts only; the spawner re-checks everything on start.
    """
    if user is None:
        return []
    from hub.access import user_projects
    from hub.db import session_scope

    with session_scope(readonly=True) as session:
        return user_projects(session, user.name)


def _services(settings: Settings) -> tuple[list[dict], list[dict]]:
    idle = int(os.environ.get("TRE_IDLE_TIMEOUT", "3600"))
    max_age = int(os.environ.get("TRE_MAX_AGE", "0"))
    services: list[dict] = [
        {"name": ADMIN_SERVICE, "api_token": admin_token(settings)},
        {
            "name": "idle-culler",
            "command": [
                sys.executable,
                "-m",
                "jupyterhub_idle_culler",
                f"--timeout={idle}",
                f"--max-age={max_age}",
                f"--cull-every={max(10, min(idle, 300) // 2)}",
            ],
        },
    ]
    roles: list[dict] = [
        {
            # The operator's CLI (and the tests): manage users and servers, never open a notebook.
            "name": "tre-admin",
            "scopes": [
                "admin:users",
                "admin:servers",
                "list:users",
                "read:users",
                "read:servers",
                "tokens",
                "list:services",
                "read:services",
            ],
            "services": [ADMIN_SERVICE],
        },
        {
            "name": "idle-culler",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": ["idle-culler"],
        },
    ]
    if importlib.util.find_spec("egress.__main__") is not None:
        # As docs/development.md "Egress service wiring": no API scopes of its own; users may
        # complete OAuth into it.
        services.append(
            {
                "name": "egress",
                "url": f"http://127.0.0.1:{settings.egress_port}",
                "command": [sys.executable, "-m", "egress"],
                "environment": {k: v for k, v in os.environ.items() if k.startswith("TRE_")},
                "oauth_no_confirm": True,
            }
        )
        roles.append({"name": "user", "scopes": ["self", "access:services!service=egress"]})
    return services, roles


def configure(c: Any, settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    state = settings.state_dir
    state.mkdir(parents=True, exist_ok=True, mode=0o700)

    # --- hub, proxy, database, secrets
    c.JupyterHub.bind_url = f"http://{os.environ.get('TRE_PUBLIC_IP', '127.0.0.1')}:{settings.public_port}"
    # The hub API listens only on the workspace bridge gateway: the one host address the firewall
    # lets workspaces reach. The proxy and services reach it over the host's own routing.
    c.JupyterHub.hub_ip = gateway_ip(settings)
    c.JupyterHub.hub_port = settings.hub_port
    c.JupyterHub.db_url = hub_db_url(settings)
    protect_hub_db(settings)
    read_or_create_secret(state / "jupyterhub_cookie_secret")
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
    c.ConfigurableHTTPProxy.should_start = True
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{proxy_api_port(settings)}"
    c.ConfigurableHTTPProxy.auth_token = read_or_create_secret(state / "proxy-api-token").decode()
    c.ConfigurableHTTPProxy.command = proxy_command()
    c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
    c.JupyterHub.cleanup_servers = True
    c.JupyterHub.default_url = "/hub/home"
    c.JupyterHub.template_paths = [str(HERE / "templates")]
    c.JupyterHub.template_vars = {"tre_projects": _projects_for}
    c.JupyterHub.tornado_settings = {
        "headers": {"X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"},
        "cookie_options": {"SameSite": "Lax"},
    }

    # --- login
    c.JupyterHub.authenticator_class = "hub.auth.TREAuthenticator"
    c.NativeAuthenticator.enable_signup = False
    c.NativeAuthenticator.open_signup = False
    c.NativeAuthenticator.allowed_failed_logins = int(os.environ.get("TRE_LOCKOUT_AFTER", "5"))
    c.NativeAuthenticator.seconds_before_next_try = int(os.environ.get("TRE_LOCKOUT_SECONDS", "900"))
    c.NativeAuthenticator.minimum_password_length = 12
    c.NativeAuthenticator.check_common_password = True

    # --- workspaces: one named server per project
    c.JupyterHub.spawner_class = "hub.spawner.TRESpawner"
    c.JupyterHub.allow_named_servers = True
    c.JupyterHub.named_server_limit_per_user = 0
    c.TRESpawner.image = settings.image
    c.TRESpawner.network_name = settings.network
    c.Spawner.start_timeout = 120
    c.Spawner.http_timeout = 60

    services, roles = _services(settings)
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles


if "get_config" in globals():
    configure(get_config())  # noqa: F821 - provided by traitlets when this file is loaded as config

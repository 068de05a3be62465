"""JupyterHub configuration for the TRE (`jupyterhub -f hub/workspaces/jupyterhub_config.py`, run by
`tre hub`). Everything comes from the settings object (hub.kernel.settings), which `tre hub` hands to
this process in its environment.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.host.network import gateway_ip
from hub.jobs.handlers import job_handlers
from hub.kernel.db import session_scope
from hub.kernel.secrets import read_or_create_secret
from hub.kernel.settings import Settings, get_settings
from hub.registry.access import ProjectSummary, user_projects
from hub.workspaces.hub_api import admin_token
from hub.workspaces.login import protect_hub_db

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parent.parent  # a development checkout keeps the proxy under .node/
ADMIN_SERVICE = "tre-admin"
HSTS = "max-age=63072000; includeSubDomains"  # two years, every origin below <domain> too
SPAWNERS = {
    "docker": "hub.workspaces.spawner.TRESpawner",
    "swarm": "hub.workspaces.spawner.TRESwarmSpawner",
}


def proxy_command(settings: Settings) -> list[str]:
    local = CHECKOUT / ".node/node_modules/.bin/configurable-http-proxy"
    found = shutil.which("configurable-http-proxy") or local
    if not Path(found).exists():
        raise SystemExit("configurable-http-proxy is not installed; run `make proxy`")
    redirect = (
        ["--redirect-port", str(settings.http_port), "--redirect-to", str(settings.public_port)]
        if settings.http_port
        else []
    )
    return [str(found), *redirect]


def _project_list(settings: Settings) -> Callable[[Any], list[ProjectSummary]]:
    """The home page's project list (JupyterHub calls template_vars callables with the page's user).

    Registry facts only; the spawner re-checks everything on start.
    """

    def projects_for(user: Any) -> list[ProjectSummary]:
        if user is None:
            return []
        with session_scope(settings, readonly=True) as session:
            return user_projects(session, user.name)

    return projects_for


def _services(settings: Settings) -> tuple[list[dict], list[dict]]:
    idle, max_age = settings.idle_timeout, settings.max_age
    services: list[dict] = [
        {"name": ADMIN_SERVICE, "api_token": admin_token(settings)},
        {
            "name": "tre-sweeper",
            "command": [sys.executable, "-m", "hub.enforcement"],
            "environment": settings.to_env(),
        },
        {
            # Every browser request to a workspace passes the guard (hub.guard); no API scopes.
            "name": "tre-guard",
            "command": [sys.executable, "-m", "hub.guard"],
            "environment": settings.to_env(),
        },
        {
            # Runs the jobs researchers submit (hub.jobs); it reads the registry itself, no API scopes.
            "name": "tre-jobs",
            "command": [sys.executable, "-m", "hub.jobs"],
            "environment": settings.to_env(),
        },
        {
            "name": "idle-culler",
            "command": [
                sys.executable,
                "-m",
                "hub.workspaces.idle_culler",
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
        {
            # Stops workspaces whose access ran out (hub.enforcement); it reads the registry itself.
            "name": "tre-sweeper",
            "scopes": ["list:users", "read:servers", "delete:servers"],
            "services": ["tre-sweeper"],
        },
    ]
    # As docs/development.md "Egress service wiring": no API scopes of its own; users may complete
    # OAuth into it.
    services.append(
        {
            "name": "egress",
            "url": f"http://127.0.0.1:{settings.egress_port}",
            "command": [sys.executable, "-m", "egress"],
            "environment": settings.to_env(),
            "oauth_no_confirm": True,
        }
    )
    services.append(
        {
            "name": "portal",
            "url": f"http://127.0.0.1:{settings.portal_port}",
            "command": [sys.executable, "-m", "hub.portal"],
            "environment": settings.to_env(),
            "oauth_no_confirm": True,
        }
    )
    roles.append(
        {
            "name": "user",
            "scopes": ["self", "access:services!service=egress", "access:services!service=portal"],
        }
    )
    # A lead's project page shows and stops the members' workspaces; the registry decides who may.
    roles.append(
        {
            "name": "tre-portal",
            "scopes": ["list:users", "read:servers", "delete:servers"],
            "services": ["portal"],
        }
    )
    return services, roles


def configure(c: Any, settings: Settings) -> None:
    c.WithTRESettings.tre_settings = settings  # the spawner and the authenticators read these
    state = settings.state_dir
    state.mkdir(parents=True, exist_ok=True, mode=0o700)

    # --- origins: the hub on <domain>, each user's servers and each service on one below it, so
    # nothing a researcher's server produces shares an origin with the hub or a TRE service.
    # (Usernames and project slugs cannot contain "--": no name can take a service's origin.)
    c.JupyterHub.bind_url = f"https://{settings.public_ip}:{settings.public_port}"
    c.JupyterHub.subdomain_host = settings.origin()
    c.JupyterHub.ssl_cert = str(settings.tls_cert)
    c.JupyterHub.ssl_key = str(settings.tls_key)
    # __Host- cookies: no other origin below <domain> can set or overwrite the hub's (cookie tossing).
    c.JupyterHub.cookie_host_prefix_enabled = True

    # --- hub, proxy, database, secrets
    # The hub API listens only on the workspace bridge gateway: the one host address the firewall
    # lets workspaces reach. The proxy and services reach it over the host's own routing.
    c.JupyterHub.hub_ip = gateway_ip(settings)
    c.JupyterHub.hub_port = settings.hub_port
    c.JupyterHub.db_url = settings.hub_db_url
    protect_hub_db(settings)
    read_or_create_secret(state / "jupyterhub_cookie_secret")
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
    c.ConfigurableHTTPProxy.should_start = True
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.proxy_api_port}"
    c.ConfigurableHTTPProxy.auth_token = read_or_create_secret(state / "proxy-api-token").decode()
    c.ConfigurableHTTPProxy.command = proxy_command(settings)
    c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
    # A hub restart (upgrade, crash, `systemctl restart`) leaves workspaces and their kernels running;
    # the next hub finds them in its database. The demo and the tests remove them when they stop.
    c.JupyterHub.cleanup_servers = False
    # A restarted hub checks each running workspace through the guard, a service it starts only
    # after this wait: waiting the default 10 s delays every service, and the hub's return, for
    # nothing. The checks finish in the background once the guard answers.
    c.JupyterHub.init_spawners_timeout = 1
    c.JupyterHub.default_url = "/hub/home"
    c.JupyterHub.template_paths = [str(HERE / "templates")]
    c.JupyterHub.template_vars = {
        "tre_projects": _project_list(settings),
        "tre_egress_url": settings.service_url("egress"),
        "tre_portal_url": settings.service_url("portal"),
    }
    c.JupyterHub.tornado_settings = {
        "headers": {
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "same-origin",
            "Strict-Transport-Security": HSTS,
        },
        "cookie_options": {"SameSite": "Lax", "Secure": True},
    }

    # --- login
    c.JupyterHub.authenticator_class = "hub.workspaces.login.TREAuthenticator"
    c.NativeAuthenticator.enable_signup = False
    c.NativeAuthenticator.open_signup = False
    c.NativeAuthenticator.minimum_password_length = 12
    c.NativeAuthenticator.check_common_password = True

    # --- workspaces: one named server per project
    c.JupyterHub.spawner_class = SPAWNERS[settings.engine]
    c.JupyterHub.allow_named_servers = True
    c.JupyterHub.named_server_limit_per_user = 0
    c.Spawner.start_timeout = 120
    c.Spawner.http_timeout = 60

    # --- jobs: /hub/api/tre/jobs on the hub API port, the one host port workspaces reach
    c.JupyterHub.extra_handlers = job_handlers(settings)

    services, roles = _services(settings)
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles


if "get_config" in globals():
    # Loaded by JupyterHub as its config file: `tre hub` put the settings in this process's environment.
    configure(get_config(), get_settings())  # noqa: F821 - get_config comes from traitlets

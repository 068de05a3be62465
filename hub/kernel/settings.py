"""One settings object for the whole control plane: every `TRE_*` value, with a safe default.

`Settings.from_env()` reads the environment once; commands build their settings there (or with
`dataclasses.replace` for command-line overrides) and pass them on explicitly. A child process
(`tre hub`, the services JupyterHub starts) gets them back through `settings.to_env()`, never
through changes to this process's `os.environ`.

Every path hangs off `root` (TRE_ROOT, default /srv/tre; the demo and the tests use a local
folder), so a deployment moves by changing one variable. Secrets are never stored here: see
hub.kernel.secrets.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """An environment variable holds a value the TRE cannot use; the message names it."""


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("use 1 or 0")


ENGINES = ("docker", "swarm")


def _engine(text: str) -> str:
    if text not in ENGINES:
        raise ValueError(f"use one of {', '.join(ENGINES)}")
    return text


def _setting(env: str, default: Any, parse: Callable[[str], Any] = str) -> Any:
    return field(default=default, metadata={"env": env, "parse": parse})


@dataclass(frozen=True)
class Settings:
    root: Path = _setting("TRE_ROOT", Path("/srv/tre"), Path)  # noqa: RUF009 - a Path is immutable
    # Registry + egress database (default SQLite in state/) and JupyterHub's own (never the same one).
    db_url_override: str | None = _setting("TRE_DB_URL", None)
    hub_db_url_override: str | None = _setting("TRE_HUB_DB_URL", None)
    # The notebook image the spawner runs (built by `tre images build`, never pulled).
    image: str = _setting("TRE_IMAGE", "tre-notebook:latest")
    # Dedicated internal Docker network for workspaces, and its fixed Linux bridge name.
    network: str = _setting("TRE_NETWORK", "tre-workspaces")
    bridge: str = _setting("TRE_BRIDGE", "br-tre")
    subnet: str = _setting("TRE_SUBNET", "172.31.240.0/24")
    # Where workspaces run: "docker" (this host's engine) or "swarm" (services on a Docker Swarm whose
    # nodes each carry the workspace bridge, firewall and guard: docs/operations.md "More than one host").
    engine: str = _setting("TRE_ENGINE", "docker", _engine)
    # On a swarm, sealed re-runs and jobs cannot have "no network" (a service without one gets the
    # node's default bridge): they get a network of their own that reaches nothing, on this subnet.
    sealed_subnet: str = _setting("TRE_SEALED_SUBNET", "172.31.241.0/24")
    # Containers are `<prefix>-<user>--<project>`; a second TRE (or a test hub) on one engine sets its own.
    container_prefix: str = _setting("TRE_CONTAINER_PREFIX", "tre")
    hub_port: int = _setting("TRE_HUB_PORT", 8081, int)
    # The TRE's public name: the hub is https://<domain>, each user's servers and each service are
    # on an origin of their own below it (alice.<domain>, egress--service.<domain>).
    domain: str = _setting("TRE_DOMAIN", "tre.localhost")
    public_ip: str = _setting("TRE_PUBLIC_IP", "127.0.0.1")
    public_port: int = _setting("TRE_PUBLIC_PORT", 443, int)
    # Plain HTTP on this port only redirects to https (0: no redirect listener).
    http_port: int = _setting("TRE_HTTP_PORT", 80, int)
    # The site's certificate (for <domain> and *.<domain>) and key; default keys/tls/tre.{crt,key}.
    tls_cert_override: Path | None = _setting("TRE_TLS_CERT", None, Path)  # noqa: RUF009
    tls_key_override: Path | None = _setting("TRE_TLS_KEY", None, Path)  # noqa: RUF009
    # configurable-http-proxy's API on 127.0.0.1 (None: the public port + 1).
    proxy_api_port_override: int | None = _setting("TRE_PROXY_API_PORT", None, int)
    egress_port: int = _setting("TRE_EGRESS_PORT", 8090, int)
    # The catalogue's publisher, its contact address and the health data access body (HealthDCAT-AP).
    catalogue_publisher: str = _setting("TRE_CATALOGUE_PUBLISHER", "TRE operator")
    catalogue_contact: str = _setting("TRE_CATALOGUE_CONTACT", "tre@localhost")
    hdab_name: str = _setting("TRE_HDAB_NAME", "")
    # The portal (hub.portal): the dataset catalogue and, in time, applications and permits.
    portal_port: int = _setting("TRE_PORTAL_PORT", 8093, int)
    # The portal's worker processes, and the page handlers each runs at once (hub.web.serving).
    portal_workers: int = _setting("TRE_PORTAL_WORKERS", 2, int)
    portal_threads: int = _setting("TRE_PORTAL_THREADS", 4, int)
    # The guard: every browser request to a workspace passes it, on 127.0.0.1:<guard_port>. Only
    # processes of guard_group may open connections to the workspaces (the host firewall).
    guard_port: int = _setting("TRE_GUARD_PORT", 8095, int)
    guard_group: str = _setting("TRE_GUARD_GROUP", "tre-guard")
    # On a swarm: the guard reaches workspaces on other nodes through each node's link
    # (hub.guard.link), which listens on the node's swarm address at this port; so does the hub's
    # node, for the links' relays of the hub API.
    link_port: int = _setting("TRE_LINK_PORT", 8096, int)
    releases_to_keep: int = _setting("TRE_RELEASES_TO_KEEP", 2, int)
    egress_max_file_bytes: int = _setting("TRE_EGRESS_MAX_FILE_BYTES", 100 * 1024 * 1024, int)
    # Largest file a browser upload may create in a workspace.
    max_upload_bytes: int = _setting("TRE_MAX_UPLOAD_BYTES", 64 * 1024 * 1024, int)
    # Re-runs of a request's notebook (egress): time limit each, and how many run at once on this host.
    rerun_seconds: int = _setting("TRE_RERUN_SECONDS", 900, int)
    reruns_at_once: int = _setting("TRE_RERUNS_AT_ONCE", 2, int)
    # Jobs (hub.jobs) running at once on this host, whatever the projects' own limits allow.
    jobs_at_once: int = _setting("TRE_JOBS_AT_ONCE", 4, int)
    # Workspaces idle this long (seconds) are stopped; max_age stops them whatever they do (0: never).
    idle_timeout: int = _setting("TRE_IDLE_TIMEOUT", 3600, int)
    max_age: int = _setting("TRE_MAX_AGE", 12 * 3600, int)
    # How often the sweeper stops workspaces whose access ran out (expiries); registry changes act at once.
    sweep_seconds: int = _setting("TRE_SWEEP_SECONDS", 15, int)
    # Login throttle: after this many failures a username waits lockout_delay seconds, doubling with
    # each further failure up to lockout_seconds; attempts while it waits do not extend the wait.
    lockout_after: int = _setting("TRE_LOCKOUT_AFTER", 5, int)
    lockout_delay: int = _setting("TRE_LOCKOUT_DELAY", 30, int)
    lockout_seconds: int = _setting("TRE_LOCKOUT_SECONDS", 900, int)
    # Turns TOTP off: the local demo only, and logged loudly.
    demo_no_mfa: bool = _setting("TRE_DEMO_NO_MFA", False, _bool)
    debian_mirror: str = _setting("TRE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
    # Image build cache: the debootstrap root filesystem, the wheel house, the build context.
    image_cache: Path = _setting("TRE_IMAGE_CACHE", Path("/var/cache/tre/images"), Path)  # noqa: RUF009
    # Institutional sign-in (docs/oidc.md); unused unless the OIDC configuration is loaded.
    oidc_issuer: str = _setting("TRE_OIDC_ISSUER", "")
    oidc_client_id: str = _setting("TRE_OIDC_CLIENT_ID", "")
    oidc_client_secret_file: str = _setting("TRE_OIDC_CLIENT_SECRET_FILE", "")
    oidc_name: str = _setting("TRE_OIDC_NAME", "institutional login")
    oidc_authorize_url: str = _setting("TRE_OIDC_AUTHORIZE_URL", "")
    oidc_token_url: str = _setting("TRE_OIDC_TOKEN_URL", "")
    oidc_userinfo_url: str = _setting("TRE_OIDC_USERINFO_URL", "")
    # The claim that names a person for good (never an editable one such as preferred_username);
    # registry users are linked to its value with `tre user set-subject`.
    oidc_subject_claim: str = _setting("TRE_OIDC_SUBJECT_CLAIM", "sub")
    oidc_acr_values: str = _setting("TRE_OIDC_ACR_VALUES", "")
    # Where the provider enforces MFA: the acr values (or amr methods) a login must show, comma-separated.
    oidc_required_acr: str = _setting("TRE_OIDC_REQUIRED_ACR", "")
    oidc_required_amr: str = _setting("TRE_OIDC_REQUIRED_AMR", "")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            env = f.metadata["env"]
            if env in environ:
                try:
                    values[f.name] = f.metadata["parse"](environ[env])
                except ValueError as exc:
                    raise SettingsError(f"{env}={environ[env]!r} is not valid ({exc})") from None
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The TRE_* environment that gives a child process exactly these settings."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.metadata["env"]] = ("1" if value else "0") if isinstance(value, bool) else str(value)
        return out

    @staticmethod
    def variables() -> list[str]:
        """Every environment variable the settings read (for docs and tests)."""
        return [f.metadata["env"] for f in fields(Settings)]

    @cached_property
    def state_dir(self) -> Path:
        return self.root / "state"

    @cached_property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @cached_property
    def link_secret_path(self) -> Path:
        """The secret the guard and the nodes' links share (every node reads the same file)."""
        return self.keys_dir / "link.secret"

    @cached_property
    def projects_dir(self) -> Path:
        return self.root / "projects"

    @cached_property
    def homes_dir(self) -> Path:
        return self.root / "homes"

    @cached_property
    def egress_dir(self) -> Path:
        return self.root / "egress"

    @cached_property
    def db_url(self) -> str:
        return self.db_url_override or f"sqlite:///{self.state_dir / 'tre.sqlite'}"

    @cached_property
    def hub_db_url(self) -> str:
        return self.hub_db_url_override or f"sqlite:///{self.state_dir / 'jupyterhub.sqlite'}"

    @property
    def proxy_api_port(self) -> int:
        return self.proxy_api_port_override or self.public_port + 1

    @cached_property
    def tls_cert(self) -> Path:
        return self.tls_cert_override or self.keys_dir / "tls" / "tre.crt"

    @cached_property
    def tls_key(self) -> Path:
        return self.tls_key_override or self.keys_dir / "tls" / "tre.key"

    def origin(self, subdomain: str = "") -> str:
        """https://[subdomain.]<domain>[:port]: the hub's origin, or one below it."""
        host = f"{subdomain}.{self.domain}" if subdomain else self.domain
        return f"https://{host}" + ("" if self.public_port == 443 else f":{self.public_port}")

    @property
    def public_url(self) -> str:
        """The hub's public URL (the OIDC callback, links from the services)."""
        return self.origin()

    def service_url(self, name: str) -> str:
        """Where a TRE service (egress, portal) lives: an origin of its own, as JupyterHub names it."""
        return f"{self.origin(f'{name}--service')}/services/{name}/"

    def project_dir(self, slug: str) -> Path:
        return self.projects_dir / slug

    def current_release(self, slug: str) -> Path:
        """The published release of a project (a symlink `current -> releases/<n>`)."""
        return self.projects_dir / slug / "current"

    def home_dir(self, slug: str, username: str) -> Path:
        return self.homes_dir / slug / username


def get_settings() -> Settings:
    """Fresh settings from the current environment (cheap; tests change TRE_ROOT between cases)."""
    return Settings.from_env()

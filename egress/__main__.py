"""`python -m egress`: run the review service (JupyterHub starts it this way as a managed service).

JupyterHub hands a service its address, prefix and token in JUPYTERHUB_* variables; they are read
here, at the entry point, and everything else comes from the TRE settings.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

import uvicorn

from egress.web.app import DEFAULT_PREFIX, create_app
from hub.kernel.lifecycle import die_with_parent
from hub.kernel.settings import Settings, get_settings
from hub.web.serving import prepare_to_serve


def bind_address(settings: Settings) -> tuple[str, int]:
    """Host and port from JupyterHub's JUPYTERHUB_SERVICE_URL, else 127.0.0.1:settings.egress_port."""
    url = os.environ.get("JUPYTERHUB_SERVICE_URL")
    if url:
        parsed = urlparse(url)
        return parsed.hostname or "127.0.0.1", parsed.port or 80
    return "127.0.0.1", settings.egress_port


def main() -> None:
    if not os.environ.get("JUPYTERHUB_API_TOKEN"):
        # Sign-in is only through the hub; there is no stand-alone mode to fall back to.
        raise SystemExit(
            "error: the egress service runs as a JupyterHub service (it signs users in through the hub); "
            "start it with `tre hub`, not on its own"
        )
    die_with_parent()  # a hub killed outright must not leave its egress service holding the port
    settings = get_settings()
    host, port = bind_address(settings)
    app = create_app(
        settings,
        prefix=os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or DEFAULT_PREFIX,
        public_url=os.environ.get("JUPYTERHUB_PUBLIC_URL", ""),
    )
    prepare_to_serve(app, app.state.services.templates, settings)
    # One process: the service keeps no state between requests that several workers would need to share,
    # but a single worker keeps SQLite writers few; the hub proxy is the only client.
    uvicorn.run(app, host=host, port=port, proxy_headers=True, log_level="info", access_log=False)


if __name__ == "__main__":
    main()

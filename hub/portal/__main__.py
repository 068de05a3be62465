"""`python -m hub.portal`: run the portal (JupyterHub starts it as a managed service)."""

from __future__ import annotations

import os
from urllib.parse import urlparse

import uvicorn

from hub.kernel.lifecycle import die_with_parent
from hub.kernel.settings import get_settings
from hub.portal.app import DEFAULT_PREFIX, create_app
from hub.provisioning.runs import fail_orphaned_runs


def main() -> None:
    if not os.environ.get("JUPYTERHUB_API_TOKEN"):
        raise SystemExit(
            "error: the portal runs as a JupyterHub service (it signs users in through the hub); "
            "start it with `tre hub`, not on its own"
        )
    die_with_parent()
    settings = get_settings()
    fail_orphaned_runs(settings)  # builds this process started before a restart ran in its threads
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", f"http://127.0.0.1:{settings.portal_port}"))
    app = create_app(
        settings,
        prefix=os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or DEFAULT_PREFIX,
        public_url=os.environ.get("JUPYTERHUB_PUBLIC_URL", ""),
    )
    uvicorn.run(
        app, host=url.hostname or "127.0.0.1", port=url.port or 80, proxy_headers=True, access_log=False
    )


if __name__ == "__main__":
    main()

"""`python -m hub.portal`: run the portal (JupyterHub starts it as a managed service)."""

from __future__ import annotations

import os
from urllib.parse import urlparse

import uvicorn

from hub.kernel.lifecycle import die_with_parent
from hub.kernel.settings import get_settings
from hub.portal.app import service_app
from hub.provisioning.runs import fail_orphaned_runs
from hub.web.serving import serve_in_workers


def main() -> None:
    if not os.environ.get("JUPYTERHUB_API_TOKEN"):
        raise SystemExit(
            "error: the portal runs as a JupyterHub service (it signs users in through the hub); "
            "start it with `tre hub`, not on its own"
        )
    die_with_parent()
    settings = get_settings()
    # Builds left "running" by a portal that died are failed now, not when someone looks.
    fail_orphaned_runs(settings)
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", f"http://127.0.0.1:{settings.portal_port}"))
    where = {
        "host": url.hostname or "127.0.0.1",
        "port": url.port or 80,
        "proxy_headers": True,
        "access_log": False,
    }
    if settings.portal_workers == 1:
        # One process, started as fast as before: the hub's restart waits for every service it runs.
        uvicorn.run(service_app(), **where)
        return
    # Each worker builds its own app (service_app); they share nothing but the registry, so a page
    # drawn by one shows what another changed. Workers start more slowly: each imports everything.
    serve_in_workers(
        uvicorn.Config("hub.portal.app:service_app", factory=True, workers=settings.portal_workers, **where)
    )


if __name__ == "__main__":
    main()

"""`python -m egress`: run the review service (JupyterHub starts it this way as a managed service)."""

from __future__ import annotations

import os
from urllib.parse import urlparse

from hub.settings import get_settings


def bind_address() -> tuple[str, int]:
    """Host and port from JupyterHub's JUPYTERHUB_SERVICE_URL, else 127.0.0.1:settings.egress_port."""
    url = os.environ.get("JUPYTERHUB_SERVICE_URL")
    if url:
        parsed = urlparse(url)
        return parsed.hostname or "127.0.0.1", parsed.port or 80
    return "127.0.0.1", get_settings().egress_port


def main() -> None:
    import uvicorn

    from egress.app import create_app

    if not os.environ.get("JUPYTERHUB_API_TOKEN"):
        # Sign-in is only through the hub; there is no stand-alone mode to fall back to.
        raise SystemExit(
            "error: the egress service runs as a JupyterHub service (it signs users in through the hub); "
            "start it with `tre hub`, not on its own"
        )
    host, port = bind_address()
    # One process: the service keeps no state between requests that several workers would need to share,
    # but a single worker keeps SQLite writers few; the hub proxy is the only client.
    uvicorn.run(create_app(), host=host, port=port, proxy_headers=True, log_level="info", access_log=False)


if __name__ == "__main__":
    main()

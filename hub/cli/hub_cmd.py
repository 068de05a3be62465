"""`tre hub`: run the proxy, JupyterHub and its managed services."""

from __future__ import annotations


def hub() -> None:
    """Start configurable-http-proxy, JupyterHub and the managed services (egress, idle culler)."""
    raise SystemExit("tre hub is not available yet")

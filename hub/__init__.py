"""TRE control plane: registry, provisioning, JupyterHub configuration and the `tre` CLI."""

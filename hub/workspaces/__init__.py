"""Workspaces: the JupyterHub side of the TRE.

`spawner` (one hardened container per researcher per project, permit checked on every start),
`login` (password + TOTP through NativeAuthenticator) and `oidc` (institutional sign-in),
`jupyterhub_config` (the hub's configuration, services and roles), `templates/` (the hub's pages),
`hub_process` (running `tre hub` as a supervised child process).
"""

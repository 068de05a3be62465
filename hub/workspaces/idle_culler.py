"""`python -m hub.workspaces.idle_culler`: jupyterhub-idle-culler as a managed service of the hub that
dies with the hub (hub.kernel.lifecycle), so a hub killed outright leaves no culler behind."""

from __future__ import annotations

import jupyterhub_idle_culler

from hub.kernel.lifecycle import die_with_parent

if __name__ == "__main__":
    die_with_parent()
    jupyterhub_idle_culler.main()  # reads its options (--timeout, --max-age, ...) from sys.argv
